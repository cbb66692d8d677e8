"""Benchmark figures from a training run's metric lines: honest, warm-up excluded, cost-aware.

* samples/s: steady state = all logged intervals except the first after each (re)start (warm-up:
  allocator, caches, torch.compile), as total samples / total seconds; intervals are timed by the
  loop with device synchronisation.
* sec/step: median over the same intervals; `step_time_cv` is their spread: the coefficient of variation
  of the seconds per step (per sample where no step is logged) of those intervals, None under two.
* time-to-accuracy / cost-to-accuracy (DAWNBench): training seconds until the target metric is first
  reached, times the run's hourly price.
* $/epoch and $/1M samples at the run's price; MFU = counted FLOPs/sample x samples/s / peak FLOP/s.
"""
from __future__ import annotations

import math
import re
import statistics

from training_scripts.throughput import loop_throughput, steady_intervals  # noqa: F401 (re-exported)


def spread(values) -> tuple[float | None, float | None]:
    """(median, coefficient of variation) of the numbers among `values`; CV is None under 2 values."""
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not numbers:
        return None, None
    median = statistics.median(numbers)
    if len(numbers) < 2:
        return median, None
    mean = math.fsum(numbers) / len(numbers)  # floats throughout: statistics.stdev is exact but slow
    deviation = math.sqrt(math.fsum((v - mean) ** 2 for v in numbers) / (len(numbers) - 1))
    return median, (deviation / abs(mean) if mean else None)


def counter_intervals(history: list[dict], counter: str) -> list[tuple[float, float]]:
    """(seconds, units) between consecutive records of one attempt whose `t` and `counter` (a script's
    cumulative `step` or `samples`) both grow; the first interval of each attempt is warm-up, dropped."""
    intervals, previous, first = [], None, True
    for record in history:
        if record.get("event") == "resumed" or (previous and record.get("attempt") != previous.get("attempt")):
            previous, first = None, True
        if counter not in record or "t" not in record:
            continue
        if previous and record["t"] > previous["t"] and record[counter] > previous[counter]:
            if not first:
                intervals.append((record["t"] - previous["t"], record[counter] - previous[counter]))
            first = False
        previous = record
    return intervals


def throughput(history: list[dict]) -> tuple[float | None, float | None]:
    """(samples/s, sec/step): from the loop's own device-synchronised intervals where it logs them,
    else from the `samples` / `step` counters of any script's metric lines and their arrival times."""
    samples_per_s, sec_per_step = loop_throughput(history)
    if samples_per_s is not None:
        return samples_per_s, sec_per_step
    by_samples, by_steps = counter_intervals(history, "samples"), counter_intervals(history, "step")
    samples_per_s = sum(u for _, u in by_samples) / sum(t for t, _ in by_samples) if by_samples else None
    sec_per_step = statistics.median(t / u for t, u in by_steps) if by_steps else None
    return samples_per_s, sec_per_step


def step_time_cv(history: list[dict]) -> float | None:
    """The spread of a run's step times: CV (sample standard deviation / mean) of the seconds per step of its
    steady intervals (the loop's own, else the `step`, else the `samples` counter's); None under two."""
    rates = [r["sec_per_step"] for r in steady_intervals(history) if r.get("sec_per_step")]
    for counter in ("step", "samples"):
        if len(rates) < 2:
            rates = [t / u for t, u in counter_intervals(history, counter)]
    return spread(rates)[1]


# Per-unit costs (ms_per_batch, sec_per_step) shrink too; rates (samples_per_s, tokens_per_second) do not match.
LOWER_IS_BETTER = re.compile(
    r"loss|err|ppl|perplexity|mse|mae|rmse|wer|cer|time|seconds|latency|duration|nll|bpb|bpc|(?:^|_)(?:ms|sec|s)_per_",
    re.IGNORECASE)


def higher_is_better(metric: str | None) -> bool:
    """Accuracy-like metrics grow, loss-like ones shrink (by name, when the script does not say)."""
    return not (metric and LOWER_IS_BETTER.search(metric))


def time_to_target(history: list[dict], metric: str, value: float, higher: bool) -> float | None:
    """Training seconds until `metric` first reaches `value` (the loop's `train_seconds`, else the
    agent's `train_t`: script seconds summed over attempts)."""
    for record in history:
        seconds = record.get("train_seconds", record.get("train_t"))
        if metric in record and seconds is not None:
            if record[metric] >= value if higher else record[metric] <= value:
                return float(seconds)
    return None


def _epochs(script_result: dict | None, history: list[dict]) -> float | None:
    final = (script_result or {}).get("final") or {}
    if final.get("epochs_completed") or final.get("updates"):
        return final.get("epochs_completed") or final.get("updates")
    epochs = [r["epoch"] for r in history if isinstance(r.get("epoch"), (int, float))]
    return (max(epochs) - min(epochs) + 1) if epochs else None


def summarize(history: list[dict], *, usd_per_hour: float, peak_tflops: float | None, target: dict | None,
              script_result: dict | None = None, train_seconds: float | None = None) -> dict:
    """Benchmark figures of one run. `script_result` is the result.json a bundled workload writes about
    itself (primary metric, direction, FLOPs/sample, its own training seconds); any other script is
    described by its metric lines alone, with `train_seconds` measured by the agent."""
    script_result = script_result or {}
    samples_per_s, sec_per_step = throughput(history)
    per_second = usd_per_hour / 3600
    primary = script_result.get("primary_metric") or (target or {}).get("metric")
    higher = script_result.get("higher_is_better", higher_is_better(primary))
    final_metric = (script_result.get("final") or {}).get(primary)
    if final_metric is None and primary:
        final_metric = next((r[primary] for r in reversed(history) if primary in r), None)
    seconds = float(script_result.get("train_seconds") or train_seconds or 0.0)
    epochs = _epochs(script_result, history)
    tta = time_to_target(history, target["metric"], target["value"], higher) if target else None
    flops = script_result.get("train_flops_per_sample")
    mfu = (flops * samples_per_s / (peak_tflops * 1e12)) if flops and samples_per_s and peak_tflops else None
    return {
        "samples_per_s": samples_per_s,
        "sec_per_step": sec_per_step,
        "step_time_cv": step_time_cv(history),
        "train_seconds": seconds,
        "usd_per_epoch": per_second * seconds / epochs if epochs else None,
        "usd_per_1m_samples": per_second * 1e6 / samples_per_s if samples_per_s else None,
        "time_to_accuracy_s": tta,
        "cost_to_accuracy_usd": tta * per_second if tta is not None else None,
        "final_metric": final_metric,
        "primary_metric": primary,
        "higher_is_better": higher,
        "mfu": mfu,
        "train_flops_per_sample": flops,
    }
