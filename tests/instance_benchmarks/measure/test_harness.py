import statistics

import pytest

from instance_benchmarks.embedded.environment import local_peak_tflops
from instance_benchmarks.measure.harness import (
    counter_intervals, higher_is_better, steady_intervals, summarize, throughput, time_to_target,
)


def _interval(step, samples_per_s, seconds, **extra):
    return {"step": step, "samples_per_s": samples_per_s, "interval_s": seconds, "sec_per_step": seconds / 10, **extra}


HISTORY = [
    _interval(10, 100.0, 5.0),             # warm-up: excluded
    _interval(20, 1000.0, 1.0),
    _interval(30, 1000.0, 1.0),
    {"step": 30, "epoch": 0, "val_accuracy": 0.5, "train_seconds": 7.0},
    {"event": "resumed", "step": 30},
    _interval(40, 10.0, 10.0),             # warm-up after resume: excluded
    _interval(50, 500.0, 2.0),
    {"step": 50, "epoch": 1, "val_accuracy": 0.93, "train_seconds": 20.0},
]


def test_warm_up_intervals_are_excluded_after_start_and_resume():
    assert [r["step"] for r in steady_intervals(HISTORY)] == [20, 30, 50]
    samples_per_s, sec_per_step = throughput(HISTORY)
    assert samples_per_s == pytest.approx((1000 + 1000 + 1000) / 4.0)
    assert sec_per_step == pytest.approx(0.1)


def test_time_to_target():
    assert time_to_target(HISTORY, "val_accuracy", 0.9, True) == 20.0
    assert time_to_target(HISTORY, "val_accuracy", 0.99, True) is None
    assert time_to_target([{"val_mse": 0.2, "train_seconds": 3.0}], "val_mse", 0.3, False) == 3.0


def test_summarize_costs_and_mfu():
    train = {"primary_metric": "val_accuracy", "higher_is_better": True, "train_seconds": 36.0,
             "train_flops_per_sample": 1e9, "final": {"val_accuracy": 0.93, "epochs_completed": 2}}
    figures = summarize(HISTORY, script_result=train, usd_per_hour=3.6, peak_tflops=15.7,
                        target={"metric": "val_accuracy", "value": 0.9})
    assert figures["usd_per_epoch"] == pytest.approx(3.6 / 3600 * 36 / 2)
    assert figures["usd_per_1m_samples"] == pytest.approx(0.001 * 1e6 / 750)
    assert figures["time_to_accuracy_s"] == 20.0 and figures["cost_to_accuracy_usd"] == pytest.approx(0.02)
    assert figures["mfu"] == pytest.approx(1e9 * 750 / 15.7e12)
    assert figures["final_metric"] == 0.93


def test_local_peak_is_positive_and_explained():
    peak, source = local_peak_tflops()
    assert peak > 0 and "estimated" in source


# A script that knows nothing of trainfleet: cumulative counters, timed by the agent as lines arrive ("t").
FOREIGN = [
    {"t": 1.0, "step": 10, "samples": 320, "loss": 2.0, "attempt": 1},     # first interval: warm-up
    {"t": 6.0, "step": 20, "samples": 640, "loss": 1.5, "attempt": 1},
    {"t": 7.0, "step": 30, "samples": 960, "loss": 1.2, "attempt": 1},
    {"t": 8.0, "step": 40, "samples": 1280, "loss": 1.0, "attempt": 1},
    {"t": 0.5, "step": 40, "samples": 1280, "attempt": 2},                 # resumed: t restarts
    {"t": 4.5, "step": 50, "samples": 1600, "loss": 0.9, "attempt": 2},    # warm-up again
    {"t": 5.5, "step": 60, "samples": 1920, "loss": 0.8, "val_accuracy": 0.91, "train_t": 13.5, "attempt": 2},
]


def test_counters_give_throughput_without_the_warm_up_of_each_attempt():
    assert counter_intervals(FOREIGN, "step") == [(1.0, 10), (1.0, 10), (1.0, 10)]
    samples_per_s, sec_per_step = throughput(FOREIGN)
    assert samples_per_s == pytest.approx(320.0) and sec_per_step == pytest.approx(0.1)


def test_foreign_script_summary_from_metric_lines_alone():
    figures = summarize(FOREIGN, train_seconds=13.5, usd_per_hour=3.6, peak_tflops=None,
                        target={"metric": "val_accuracy", "value": 0.9})
    assert figures["primary_metric"] == "val_accuracy" and figures["final_metric"] == 0.91
    assert figures["time_to_accuracy_s"] == 13.5 and figures["train_seconds"] == 13.5
    assert figures["usd_per_epoch"] is None and figures["mfu"] is None
    assert figures["usd_per_1m_samples"] == pytest.approx(0.001 * 1e6 / 320)


def test_direction_follows_the_metric_name():
    assert higher_is_better("val_accuracy") and higher_is_better("reward")
    assert not higher_is_better("val_loss") and not higher_is_better("ppl") and not higher_is_better("test_mse")
    # per-unit costs shrink, rates grow
    assert not any(higher_is_better(name) for name in ("ms_per_batch", "sec_per_step", "s_per_iter", "latency_ms", "val_nll"))
    assert all(higher_is_better(name) for name in ("samples_per_s", "tokens_per_second", "items_per_sec", "mfu"))
    assert time_to_target([{"loss": 0.4, "train_t": 2.0}], "loss", 0.5, higher_is_better("loss")) == 2.0


def test_the_spread_of_step_times_is_recorded_with_each_run():
    from instance_benchmarks.measure.harness import step_time_cv

    assert step_time_cv(FOREIGN) == pytest.approx(0.0)  # three steady intervals of 1 s per 10 steps
    assert step_time_cv(HISTORY) == pytest.approx(statistics.stdev([0.1, 0.1, 0.2]) / statistics.mean([0.1, 0.1, 0.2]))
    uneven = [{"t": float(t), "step": step} for t, step in ((0, 0), (1, 10), (2, 10 + 10), (4, 30), (5, 40))]
    rates = [0.1, 0.2, 0.1]  # the first interval is warm-up
    cv = statistics.stdev(rates) / statistics.mean(rates)
    assert step_time_cv(uneven) == pytest.approx(cv)
    assert summarize(uneven, usd_per_hour=1.0, peak_tflops=None, target=None)["step_time_cv"] == pytest.approx(cv)
    assert step_time_cv(uneven[:3]) is None  # one steady interval: no spread
