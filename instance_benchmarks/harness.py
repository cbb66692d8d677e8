"""Benchmark figures from a training run's metric lines: honest, warm-up excluded, cost-aware.

* samples/s: steady state = all logged intervals except the first after each (re)start (warm-up:
  allocator, caches, torch.compile), as total samples / total seconds; intervals are timed by the
  loop with device synchronisation.
* sec/step: median over the same intervals.
* time-to-accuracy / cost-to-accuracy (DAWNBench): training seconds until the target metric is first
  reached, times the run's hourly price.
* $/epoch and $/1M samples at the run's price; MFU = counted FLOPs/sample x samples/s / peak FLOP/s.
"""
from __future__ import annotations

import os
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


def throughput(history: list[dict]) -> tuple[float | None, float | None]:
    intervals = steady_intervals(history)
    if not intervals:
        # too short a run to drop a warm-up interval: use what there is, rather than nothing
        intervals = [r for r in history if "samples_per_s" in r and r.get("interval_s")]
    if not intervals:
        return None, None
    seconds = sum(r["interval_s"] for r in intervals)
    samples = sum(r["samples_per_s"] * r["interval_s"] for r in intervals)
    return samples / seconds, statistics.median(r["sec_per_step"] for r in intervals)


def time_to_target(history: list[dict], metric: str, value: float, higher_is_better: bool) -> float | None:
    for record in history:
        if metric in record and "train_seconds" in record:
            reached = record[metric] >= value if higher_is_better else record[metric] <= value
            if reached:
                return float(record["train_seconds"])
    return None


def local_peak_tflops() -> tuple[float, str]:
    """Rough FP32 peak of this CPU: physical cores x clock x FLOPs/cycle from /proc/cpuinfo flags."""
    flags, mhz, siblings, cores = set(), [], None, None
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "flags":
                    flags = set(value.split())
                elif key == "cpu MHz":
                    mhz.append(float(value))
                elif key == "siblings":
                    siblings = int(value)
                elif key == "cpu cores":
                    cores = int(value)
    except OSError:
        pass
    threads_per_core = (siblings // cores) if siblings and cores else 1
    physical = max(1, (os.cpu_count() or 1) // max(1, threads_per_core))
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 8
    ghz = (max(mhz) if mhz else 2000.0) / 1000
    return physical * ghz * per_cycle / 1000, f"estimated: {physical} cores x {ghz:.2f} GHz x {per_cycle} FLOP/cycle"


def summarize(train_result: dict, history: list[dict], *, usd_per_hour: float, peak_tflops: float | None,
              target: dict | None) -> dict:
    samples_per_s, sec_per_step = throughput(history)
    per_second = usd_per_hour / 3600
    primary = train_result["primary_metric"]
    final = train_result["final"]
    epochs = final.get("epochs_completed") or final.get("updates") or 1
    train_seconds = float(train_result["train_seconds"])
    tta = None
    if target:
        tta = time_to_target(history, target["metric"], target["value"], train_result.get("higher_is_better", True))
    flops = train_result.get("train_flops_per_sample")
    mfu = (flops * samples_per_s / (peak_tflops * 1e12)) if flops and samples_per_s and peak_tflops else None
    return {
        "samples_per_s": samples_per_s,
        "sec_per_step": sec_per_step,
        "train_seconds": train_seconds,
        "usd_per_epoch": per_second * train_seconds / epochs,
        "usd_per_1m_samples": per_second * 1e6 / samples_per_s if samples_per_s else None,
        "time_to_accuracy_s": tta,
        "cost_to_accuracy_usd": tta * per_second if tta is not None else None,
        "final_metric": final.get(primary),
        "primary_metric": primary,
        "higher_is_better": train_result.get("higher_is_better", True),
        "mfu": mfu,
        "train_flops_per_sample": flops,
    }
