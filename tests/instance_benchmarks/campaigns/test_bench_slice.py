"""Smoke test of the slice benchmark script: a tiny real workload run end to end (figures, not accuracy)."""
from __future__ import annotations

import math

from instance_benchmarks.campaigns.bench_slice import bench, report


def test_bench_runs_a_tiny_workload_and_predicts_it_from_a_slice(monkeypatch):
    # One torch thread: two threads on a shared 2-core CI machine slow down many-fold when another job runs.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # Wide layers: training (~2 s) must outlast 1/4 of interpreter start + torch import (~3 s) to reach into the slice.
    figures = bench("tabular_mlp", ["--epochs=3", "--batch_size=512", "--hidden_layers=512,512", "--log_every=6"],
                    slice_fraction=0.8)
    assert figures["total_steps"] == 96  # 16,000 training rows / 512 per step = 32 steps x 3 epochs
    est = figures["estimate"]
    assert est is not None and est.unit == "step" and est.measured_units > 0
    assert 0 < figures["slice_steps"] < figures["total_steps"]
    for value in (figures["actual_seconds"], figures["error_pct"], est.sec_per_unit, est.est_train_seconds,
                  est.est_train_seconds_low, est.est_train_seconds_high):
        assert math.isfinite(value)
    assert figures["actual_seconds"] > 0 and est.est_train_seconds > 0
    assert report(figures).splitlines()[-1].startswith("prediction error: ")
