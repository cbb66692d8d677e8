"""Scaling efficiency in the report: samples/s per GPU of a multi-GPU run (torchrun, world_size processes)
against the single-GPU runs of the same workload, hyperparameters (seed aside) and GPU model."""
from __future__ import annotations

import csv
import io
import re

import pytest

from instance_benchmarks.campaigns.report import assemble_report, render_files, to_markdown
from instance_benchmarks.campaigns.report_html import to_html


def _record(run_id, instance_type, samples_per_s, world_size, **hyper):
    hyperparameters = {"epochs": 2, "batch_size": 512, **hyper}
    result = {"status": "complete", "run_id": run_id, "instance_type": instance_type, "market": "spot",
              "price": {"usd_per_hour": 1.0}, "samples_per_s": samples_per_s, "sec_per_step": 0.1,
              "usd_per_1m_samples": 1e6 / samples_per_s / 3600, "final_metric": 0.9, "primary_metric": "test_accuracy",
              "train_seconds": 60.0, "cost_usd": 0.02, "attempts": 1, "backend": "ec2", "measured_on": "ec2",
              "workload": "cifar10_resnet", "hyperparameters": hyperparameters}
    if world_size is not None:
        result["world_size"] = world_size
    return {"run_id": run_id, "launch": {"hyperparameters": hyperparameters, "attempts": [{"outcome": "completed"}]},
            "result": result}


@pytest.fixture
def report():
    records = [
        _record("g5-1", "g5.xlarge", 1000.0, 1, seed=0),       # one A10G: the baseline, two repeats
        _record("g5-1-r2", "g5.xlarge", 1200.0, 1, seed=1),    # (vary_seed: another seed, the same configuration)
        _record("g5-4", "g5.12xlarge", 3520.0, 4, seed=0),     # four A10Gs: 880/GPU against a median of 1100
        _record("g5-4-bs", "g5.12xlarge", 3000.0, 4, seed=0, batch_size=2048),  # no single-GPU run at this batch
        _record("p3-4", "p3.8xlarge", 6000.0, 4, seed=0),      # four V100s: no single-V100 run in the campaign
        _record("c5", "c5.xlarge", 50.0, 1, seed=0),           # a CPU type: no GPU, no per-GPU figure
        _record("g5-4-old", "g5.12xlarge", 3600.0, None, seed=0),  # an older result without world_size
    ]
    document = {"backends": {"ec2": {"spec": {"matrix": {"instance_type": ["g5.xlarge", "g5.12xlarge"],
                                                         "batch_size": [512, 2048]}}}}}
    return assemble_report("gpus", records, document, {})


def test_scaling_efficiency_compares_the_same_workload_hyperparameters_and_gpu_model(report):
    rows = {r["run_id"]: r for r in report.rows}
    assert rows["g5-4"]["samples_per_s_per_device"] == pytest.approx(880.0)
    assert rows["g5-4"]["scaling_efficiency"] == pytest.approx(880.0 / 1100.0)
    assert rows["g5-1"]["samples_per_s_per_device"] == 1000.0 and rows["g5-1"].get("scaling_efficiency") is None
    assert rows["g5-4-bs"]["samples_per_s_per_device"] == 750.0 and rows["g5-4-bs"].get("scaling_efficiency") is None
    assert rows["p3-4"]["samples_per_s_per_device"] == 1500.0 and rows["p3-4"].get("scaling_efficiency") is None
    assert rows["c5"].get("samples_per_s_per_device") is None
    assert rows["g5-4-old"].get("samples_per_s_per_device") is None and rows["g5-4-old"].get("scaling_efficiency") is None


def test_the_markdown_shows_scaling_in_the_runs_table_and_names_it(report):
    text = to_markdown(report)
    header = next(line for line in text.splitlines() if line.startswith("| run |"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    row = next(line for line in text.splitlines() if line.startswith("| g5-4 |"))
    values = [c.strip() for c in row.strip("|").split("|")]
    assert values[cells.index("processes")] == "4"
    assert values[cells.index("samples/s per GPU")] == "880.0"
    assert values[cells.index("scaling efficiency")] == "0.8000"
    assert "### Scaling efficiency" in text
    assert "- `g5-4` g5.12xlarge (4 processes): 880.0 samples/s per GPU, efficiency 80%" in text
    assert "`p3-4`" not in text.split("### Scaling efficiency")[1].split("##")[0]  # no baseline, no line


def test_the_html_runs_table_carries_scaling_efficiency(report):
    page = to_html(report, {})
    table = re.search(r'<table class="sortable" id="runs">(.*?)</table>', page, re.S).group(1)
    keys = re.findall(r'<th data-key="([^"]+)"', table)
    row = next(r for r in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S) if 'data-value="g5-4"' in r)
    values = re.findall(r'data-value="([^"]*)"', row)
    assert float(values[keys.index("scaling_efficiency")]) == pytest.approx(0.8)
    assert float(values[keys.index("samples_per_s_per_device")]) == pytest.approx(880.0)
    assert 'id="scaling-note"' in page


def test_no_multi_gpu_run_no_scaling_section(report):
    single = assemble_report("one", [_record("g5-1", "g5.xlarge", 1000.0, 1)], {}, {})
    assert "Scaling efficiency" not in to_markdown(single) and 'id="scaling-note"' not in to_html(single, {})
    rows = list(csv.DictReader(io.StringIO(render_files(report)["report.csv"].decode())))
    assert {r["run_id"]: r["scaling_efficiency"] for r in rows}["g5-4"] == str(880.0 / 1100.0)
