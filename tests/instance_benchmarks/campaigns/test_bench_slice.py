"""Smoke test of the slice benchmark script: a tiny real workload run end to end (figures, not accuracy)."""
from __future__ import annotations

import math

from instance_benchmarks.campaigns.bench_slice import bench, report


def test_bench_runs_a_tiny_workload_and_predicts_it_from_a_slice():
    # Wide layers so that training (~2 s), not the interpreter's start and torch import (~3 s), fills the slice.
    figures = bench("tabular_mlp", ["--epochs=6", "--batch_size=512", "--hidden_layers=512,512", "--log_every=8"],
                    slice_fraction=0.8, warmup_steps=8)
    assert figures["total_steps"] == 192  # 16,000 training rows / 512 per step = 32 steps x 6 epochs
    est = figures["estimate"]
    assert est is not None and est.unit == "step" and est.measured_units > 0
    assert 0 < figures["slice_steps"] < figures["total_steps"]
    for value in (figures["actual_seconds"], figures["error_pct"], est.sec_per_unit, est.est_train_seconds,
                  est.est_train_seconds_low, est.est_train_seconds_high):
        assert math.isfinite(value)
    assert figures["actual_seconds"] > 0 and est.est_train_seconds > 0
    assert report(figures).splitlines()[-1].startswith("prediction error: ")
