"""Smoke test of the slice benchmark script: a tiny real workload run end to end (figures, not accuracy)."""
from __future__ import annotations

import math

import pytest

from instance_benchmarks.campaigns.bench_slice import bench, report


def test_bench_runs_a_tiny_workload_and_predicts_it_from_a_slice(monkeypatch):
    # One torch thread: two threads on a shared 2-core CI machine slow down many-fold when another job runs.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # Wide layers: training (~2 s) must outlast 1/4 of interpreter start + torch import (~3 s) to reach into the slice.
    figures = bench("tabular_mlp", ["--epochs=3", "--batch_size=512", "--hidden_layers=512,512", "--log_every=6"],
                    slice_fraction=0.8)
    assert figures["total_steps"] == 93  # 16,000 training rows / 512 per step = 31 full steps (the last partial
    # batch is dropped) x 3 epochs
    est = figures["estimate"]
    assert est is not None and est.unit == "step" and est.measured_units > 0
    assert 0 < figures["slice_steps"] < figures["total_steps"]
    for value in (figures["actual_seconds"], figures["error_pct"], est.sec_per_unit, est.est_train_seconds,
                  est.est_train_seconds_low, est.est_train_seconds_high):
        assert math.isfinite(value)
    assert figures["actual_seconds"] > 0 and est.est_train_seconds > 0
    assert report(figures).splitlines()[-1].startswith("prediction error: ")


def test_per_epoch_step_counters_are_counted_through_and_predicted():
    from instance_benchmarks.campaigns.bench_slice import cumulative_steps, predict

    assert [r.get("step") for r in cumulative_steps([{"step": 10}, {"step": 20}, {"loss": 1}, {"step": 10}, {"step": 20}])] \
        == [10, 20, None, 30, 40]
    # a word-language-model log: 4 epochs of 100 batches, a line every 10, 10 ms a step after 2 s of start-up
    records = [{"t": 2.0 + 0.01 * (100 * (epoch - 1) + batch), "step": batch, "epoch": epoch}
               for epoch in range(1, 5) for batch in range(10, 101, 10)]
    figures = predict(records, slice_fraction=0.5, warmup_steps=0, warmup_seconds=0.0)
    assert figures["total_steps"] == 400 and figures["actual_seconds"] == pytest.approx(6.0)
    assert figures["estimate"].sec_per_unit == pytest.approx(0.01) and abs(figures["error_pct"]) < 1e-6


def test_bench_predicts_a_plain_text_repository_from_a_slice(monkeypatch):
    from instance_benchmarks.campaigns.bench_slice import bench_plain_text

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    figures = bench_plain_text(["--epochs=6", "--emsize=128", "--log-interval=2"], slice_fraction=0.9)
    assert figures["total_steps"] == 960  # 6 epochs x 160 batches, read from plain-text lines with the regexes
    assert figures["estimate"] is not None and math.isfinite(figures["error_pct"])
    assert figures["host_load"]["run_cpus"] > 0
    text = report(figures)
    assert "plain-text repository" in text.splitlines()[0] and "other processes" in text
    assert text.splitlines()[-1].startswith("prediction error: ")
