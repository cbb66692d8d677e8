"""Benchmark a slice of a training job, predict the whole job (stdlib only).

A long job is benchmarked by running only its first minutes or steps on each instance type. The
slice's metric records (from `measure.metrics`: "t" seconds since the script started, cumulative
"step" and/or "samples" counters) give the steady-state time per unit once warm-up (compilation,
data loading, caches) is over, and from it the full job's training time and cost.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class SliceEstimate:
    """A full job's training time predicted from a slice of it.

    `unit` is "step" or "samples"; rates are seconds per unit over the post-warm-up intervals (pairs
    of consecutive usable records): `sec_per_unit` is their total seconds / total units, `_low` and
    `_high` the 10th and 90th percentiles of the per-interval rates (widened to include the central
    rate; equal to it with fewer than 3 intervals), `cv` their coefficient of variation (None with
    fewer than 2). `est_train_seconds*` = the measured time to reach steady state + the rest of the
    job at that rate; `remaining_units` = what is left after the slice's last counter.
    """

    unit: str
    measured_units: float
    measured_seconds: float
    sec_per_unit: float
    sec_per_unit_low: float
    sec_per_unit_high: float
    cv: float | None
    total_units: float
    remaining_units: float
    est_train_seconds: float
    est_train_seconds_low: float
    est_train_seconds_high: float

    def cost(self, usd_per_hour: float, overhead_seconds: float = 0.0) -> tuple[float, float, float]:
        """(central, low, high) dollars for est train seconds + overhead (setup + boot) at that price."""
        seconds = (self.est_train_seconds, self.est_train_seconds_low, self.est_train_seconds_high)
        central, low, high = ((s + overhead_seconds) * usd_per_hour / 3600 for s in seconds)
        return central, low, high


def _number(value) -> float | None:
    """A finite int/float (not bool) as float, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _intervals(records: list[dict], unit: str, warmup_steps: int, warmup_seconds: float) -> list[tuple]:
    """(t0, count0, t1, count1) for each usable pair of consecutive post-warm-up records, in log order.

    Warm-up covers every record with "step" <= warmup_steps or t <= warmup_seconds (each when > 0),
    and those without "step" before the first record past warmup_steps. A pair is usable when t and
    the counter both grow and no "resumed" event lies between; a record where either goes backwards
    starts a new chain (resume, counter reset); one where neither does but one stands still (an
    evaluation logged at the same step, two lines in the same instant) is merged into the next pair.
    """
    past_steps = warmup_steps <= 0  # a record with "step" > warmup_steps has been seen
    intervals: list[tuple] = []
    prev = None
    for record in records:
        if record.get("event") == "resumed":
            prev = None
        step, t, count = (_number(record.get(key)) for key in ("step", "t", unit))
        past_steps = past_steps or (step is not None and step > warmup_steps)
        if t is None or count is None:
            continue
        if (not past_steps or (warmup_steps > 0 and step is not None and step <= warmup_steps)
                or (warmup_seconds > 0 and t <= warmup_seconds)):
            continue  # warm-up
        if prev is not None and t > prev[0] and count > prev[1]:
            intervals.append((*prev, t, count))
        elif prev is not None and t >= prev[0] and count >= prev[1]:
            continue
        prev = (t, count)
    return intervals


def estimate_slice(records: list[dict], *, total_steps: float | None = None, total_samples: float | None = None,
                   warmup_steps: int = 0, warmup_seconds: float = 0.0) -> SliceEstimate | None:
    """Predict a job of total_steps (or total_samples) from a slice's metric records.

    Records without "t" or the counter ("step" for total_steps, else "samples") are ignored.
    warmup_steps applies only when records carry "step" (else warm-up is by warmup_seconds alone);
    when neither applies, the first interval is taken as warm-up. None when no interval remains after.
    """
    if (total_steps is None) == (total_samples is None):
        raise ValueError("give exactly one of total_steps or total_samples")
    unit, name, total = ("step", "total_steps", total_steps) if total_steps is not None else (
        "samples", "total_samples", total_samples)
    if _number(total) is None or total <= 0:
        raise ValueError(f"{name} must be a positive number, got {total!r}")
    if warmup_steps < 0 or warmup_seconds < 0:
        raise ValueError("warmup_steps and warmup_seconds must be >= 0")
    by_steps = warmup_steps > 0 and any(_number(r.get("step")) is not None for r in records)
    intervals = _intervals(records, unit, warmup_steps if by_steps else 0, warmup_seconds)
    if not by_steps and not warmup_seconds:
        intervals = intervals[1:]
    if not intervals:
        return None
    rates = [(t1 - t0) / (c1 - c0) for t0, c0, t1, c1 in intervals]
    seconds = math.fsum(t1 - t0 for t0, _, t1, _ in intervals)
    units = math.fsum(c1 - c0 for _, c0, _, c1 in intervals)
    central = low = high = seconds / units
    if len(rates) >= 3:
        deciles = statistics.quantiles(rates, n=10, method="inclusive")
        low, high = min(deciles[0], central), max(deciles[-1], central)
    cv = statistics.stdev(rates) / statistics.fmean(rates) if len(rates) >= 2 else None
    steady_t, steady_count = intervals[0][:2]  # where the measured steady state begins
    rest = max(float(total) - steady_count, 0.0)
    done = next((c for r in reversed(records)
                 if _number(r.get("t")) is not None and (c := _number(r.get(unit))) is not None), 0.0)
    return SliceEstimate(
        unit=unit, measured_units=units, measured_seconds=seconds,
        sec_per_unit=central, sec_per_unit_low=low, sec_per_unit_high=high, cv=cv,
        total_units=float(total), remaining_units=max(float(total) - done, 0.0),
        est_train_seconds=steady_t + rest * central,
        est_train_seconds_low=steady_t + rest * low,
        est_train_seconds_high=steady_t + rest * high,
    )
