"""Steady-state throughput of the training loop's own metric records (pure Python: the trainfleet agent
and the benchmarks read them too).

The loop logs an interval record every `log_every` steps, timed with device synchronisation:
`samples_per_s`, `interval_s`, `sec_per_step`. The first interval after each (re)start is warm-up
(allocator, caches, torch.compile) and is excluded.
"""
from __future__ import annotations

import statistics


def steady_intervals(history: list[dict]) -> list[dict]:
    intervals, skip_next = [], True
    for record in history:
        if record.get("event") == "resumed":
            skip_next = True
        elif "samples_per_s" in record and record.get("interval_s"):
            if skip_next:
                skip_next = False
                continue
            intervals.append(record)
    return intervals


def loop_throughput(history: list[dict]) -> tuple[float | None, float | None]:
    """(samples/s over the steady intervals, median sec/step); (None, None) without interval records."""
    intervals = steady_intervals(history)
    if not intervals:
        # too short a run to drop a warm-up interval: use what there is, rather than nothing
        intervals = [r for r in history if "samples_per_s" in r and r.get("interval_s")]
    if not intervals:
        return None, None
    seconds = sum(r["interval_s"] for r in intervals)
    samples = sum(r["samples_per_s"] * r["interval_s"] for r in intervals)
    return samples / seconds, statistics.median(r["sec_per_step"] for r in intervals)
