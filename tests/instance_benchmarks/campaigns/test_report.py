import io

import pyarrow.parquet as pq
import pytest

from instance_benchmarks.campaigns.report import build_report, write_report
from instance_benchmarks.campaigns.report_format import pareto_front
from instance_benchmarks.campaigns.store import run_location, write_json
from training_scripts.storage import S3Location


def _result(run_id, batch, samples_per_s, final, tta):
    return {"status": "complete", "run_id": run_id, "instance_type": "c5.xlarge", "market": "spot",
            "price": {"usd_per_hour": 0.06}, "samples_per_s": samples_per_s, "sec_per_step": 0.1,
            "usd_per_epoch": 0.001, "usd_per_1m_samples": 0.06 / 3600 * 1e6 / samples_per_s,
            "time_to_accuracy_s": tta, "cost_to_accuracy_usd": tta and tta * 0.06 / 3600, "final_metric": final,
            "primary_metric": "final10_reward", "mfu": 1e-4, "train_seconds": 10.0 + batch, "cost_usd": 0.001,
            "attempts": 1, "measured_on": "local", "host": "local test"}


@pytest.fixture
def campaign(s3, bucket):
    write_json(S3Location(bucket, "campaigns/sweep", s3), "campaign.json", {"backends": {
        "ec2": {"spec": {"matrix": {"instance_type": ["c5.xlarge"], "batch_size": [3, 5, 10]},
                         "target": {"metric": "final10_reward", "value": 195}}}}})
    for run_id, batch, rate, final, tta in [("r3", 3, 900.0, 94.0, None), ("r10", 10, 1500.0, 460.0, 4.0)]:
        location = run_location(s3, bucket, "sweep", run_id)
        write_json(location, "launch.json", {"hyperparameters": {"epochs": 60, "batch_size": batch}, "attempts": [{"outcome": "completed"}]})
        write_json(location, "result.json", _result(run_id, batch, rate, final, tta))
        location.child("train").write_bytes("metrics.jsonl", b'{"step": 1, "loss": 0.5, "final10_reward": 20}\n')
    write_json(run_location(s3, bucket, "sweep", "r5"), "launch.json",
               {"hyperparameters": {"epochs": 60, "batch_size": 5}, "attempts": [{"outcome": "interrupted"}]})
    return bucket


def test_only_complete_runs_are_results(s3, campaign):
    report = build_report(s3, campaign, "sweep")
    assert [r["run_id"] for r in report.rows] == ["r3", "r10"]  # numeric order of the varied value
    assert [r["label"] for r in report.rows] == ["batch_size=3", "batch_size=10"]
    assert report.incomplete == [{"run_id": "r5", "label": "batch_size=5", "attempts": 1, "last_outcome": "interrupted",
                                  "config_id": "r5", "instance_type": None, "cost_usd": 0.0}]
    assert [r["status"] for r in report.rows] == ["missed", "reached"]  # batch size 3 never reached 195


def test_a_run_that_missed_the_target_is_never_recommended_nor_on_the_front(s3, campaign):
    report = build_report(s3, campaign, "sweep")
    by_label = {c["label"]: c for c in report.configs}
    assert by_label["batch_size=3"]["status"] == "missed" and not by_label["batch_size=3"]["on_front"]
    assert by_label["batch_size=10"]["on_front"] and by_label["batch_size=5"]["status"] == "failed"
    assert report.recommendation["cheapest"]["config"]["label"] == "batch_size=10"
    assert report.recommendation["headline"] == "c5.xlarge batch_size=10 is the cheapest to reach final10_reward >= 195"


def test_report_files_locally_and_in_s3(s3, campaign, tmp_path):
    report, checksums = write_report(s3, campaign, "sweep", tmp_path)
    assert set(checksums) == {"report.csv", "report.parquet", "report.md", "report.html", "pareto.png", "curves.png",
                              "throughput.png"}
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=campaign, Prefix="campaigns/sweep/report/")["Contents"]}
    assert keys == {f"campaigns/sweep/report/{name}" for name in checksums}  # beside each other in S3
    table = pq.read_table(io.BytesIO((tmp_path / "report.parquet").read_bytes())).to_pylist()
    assert [row["samples_per_s"] for row in table] == [900.0, 1500.0]
    csv_lines = (tmp_path / "report.csv").read_text().splitlines()
    assert csv_lines[0].startswith("run_id,config_id,repeat,label,instance_type,market,status,usd_per_hour")
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.startswith("# sweep: c5.xlarge batch_size=10 is the cheapest to reach final10_reward >= 195\n")
    assert "Incomplete runs (1)" in markdown and "`r5`" in markdown and "| r10 |" in markdown
    assert "Missed the target (1)" in markdown and "`r3`" in markdown
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_pareto_front():
    points = [(1.0, 5.0), (2.0, 2.0), (3.0, 3.0), (4.0, 1.0), (2.0, 2.5)]
    assert pareto_front(points) == [0, 1, 3]


def test_best_run_follows_the_metric_direction():
    from instance_benchmarks.runner import best_run as _best_run
    from instance_benchmarks.campaigns.report import Report

    rows = [{"run_id": "a", "final_metric": 0.2}, {"run_id": "b", "final_metric": 0.1}]
    assert _best_run(Report("c", rows, [], "val_mse", {}, higher_is_better=False))["run_id"] == "b"
    assert _best_run(Report("c", rows, [], "val_accuracy", {}, higher_is_better=True))["run_id"] == "a"
