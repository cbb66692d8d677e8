"""The embedded default end to end: moto's server, deployed stacks, real agents as local workers."""
import json
from pathlib import Path

from instance_benchmarks.campaigns.spec import parse_spec
from instance_benchmarks.embedded.cloud import run_local_campaign
from tests.instance_benchmarks.conftest import spec_dict

ROOT = Path(__file__).resolve().parents[2]


def test_local_campaign_runs_reports_downloads_and_tears_down(tmp_path):
    spec = parse_spec(spec_dict(hyperparameters={"epochs": 3, "max_episode_steps": 60},
                                matrix={"instance_type": ["c5.xlarge", "m5.large"], "batch_size": [3, 5]}))
    logs = []
    outcome = run_local_campaign(spec, out=tmp_path, log=logs.append, source_dir=ROOT)
    report = outcome["report"]
    assert len(report.rows) == 4 and report.incomplete == []
    for row in report.rows:
        assert row["measured_on"].startswith("local") and row["samples_per_s"] > 0
        assert row["usd_per_hour"] == {"c5.xlarge": 0.17, "m5.large": 0.096}[row["instance_type"]]
        assert row["cost_usd"] >= 60 * row["usd_per_hour"] / 3600  # per-second billing, 60 s minimum
    assert outcome["left_running"] == []
    assert (tmp_path / "best-model" / "model.pt").exists()
    assert {p.name for p in tmp_path.iterdir()} >= {"report.csv", "report.parquet", "report.md", "pareto.png", "curves.png"}
    metrics = [json.loads(line) for line in (tmp_path / "best-model" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 3
