"""The embedded default end to end: moto's server, the deployed stacks, and each instance's real user
data executed by the local worker (wheel download and check, install, clone, setup, run, upload)."""
import json
from pathlib import Path

import pytest

from instance_benchmarks import runner
from instance_benchmarks.campaigns.models import download_run
from instance_benchmarks.campaigns.store import read_json, run_location
from instance_benchmarks.embedded.environment import EmbeddedEnvironment
from tests.instance_benchmarks.conftest import bound_spec, make_git_repo, spec_dict

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def embedded():
    with EmbeddedEnvironment.start(log=lambda *_: None) as env:
        yield env


def test_a_foreign_repository_is_cloned_measured_and_reported(embedded, tmp_path):
    """A plain PyTorch script in its own git repo (knows two env variables, prints JSON lines)."""
    example = ROOT / "examples" / "bring-your-own"
    commit = make_git_repo(tmp_path / "mine", {name: (example / name).read_text() for name in ("train.py", "requirements.txt")})
    spec = bound_spec(spec_dict(campaign="byo", workload=None, repo=str(tmp_path / "mine"), ref="main", script="train.py",
                                hyperparameters={"epochs": 4}, target={"metric": "val_accuracy", "value": 0.95},
                                matrix={"instance_type": ["c5.xlarge", "m5.large"], "batch_size": [64, 256]}))
    outcome = runner.run_to_report(embedded, [spec], out=tmp_path / "out", log=lambda *_: None)
    report = outcome["report"]
    assert len(report.rows) == 4 and report.incomplete == [] and outcome["left_running"] == []
    assert report.primary_metric == "val_accuracy"
    s3, bucket = embedded.client("s3"), embedded.infra.bucket
    for row in report.rows:
        assert row["final_metric"] > 0.9 and row["samples_per_s"] > 0 and row["time_to_accuracy_s"] > 0
        result = read_json(run_location(s3, bucket, "byo", row["run_id"]), "result.json")
        assert result["code"] == commit and result["repo"] == spec.repo and result["script"] == "train.py"
        assert result["setup_seconds"] > 0 and result["boot_seconds"] >= 0 and result["backend"] == {"name": "ec2"}
        # where it ran, as the stand-in host told the agent (host.json beside the task), not the type it names
        assert result["host"]["stand_in"] and result["host"]["label"].startswith("local ")
        assert result["host"]["label"].endswith(f" for {result['instance_type']}") and result["host"]["peak_tflops"] > 0
        assert set(result["train_artifacts"]) == {"model.pt"}
        [attempt] = read_json(run_location(s3, bucket, "byo", row["run_id"]), "launch.json")["attempts"]
        assert attempt["outcome"] == "completed" and attempt["exit_code"] == 0 and attempt["commit"] == commit
        logs = run_location(s3, bucket, "byo", row["run_id"]).child("logs/attempt-1")
        assert b"installing requirements.txt" in logs.read_bytes("bootstrap.log")
        assert b'"val_accuracy"' in logs.read_bytes("script.log")
    assert "code" in (tmp_path / "out" / "report.csv").read_text().splitlines()[0]
    files = download_run(s3, bucket, "byo", report.rows[0]["run_id"], tmp_path / "model")  # SHA-256 verified
    assert files["model.pt"].stat().st_size > 0


def test_hostile_hyperparameter_values_reach_the_script_as_literal_text(embedded, tmp_path):
    script = ("import json, os, sys\n"
              "open(os.path.join(os.environ['TRAINFLEET_OUTPUT_DIR'], 'argv.json'), 'w').write(json.dumps(sys.argv[1:]))\n")
    make_git_repo(tmp_path / "echo", {"echo.py": script})
    values = ["$(touch /tmp/trainfleet-pwned)", "; rm -rf / #", "`id`", "'quoted' \"twice\""]
    spec = bound_spec(spec_dict(campaign="literal", workload=None, repo=str(tmp_path / "echo"), ref="main",
                                script="echo.py", target=None, hyperparameters={},
                                matrix={"instance_type": ["c5.xlarge"], "note": values}))
    outcome = runner.run_to_report(embedded, [spec], out=tmp_path / "out", log=lambda *_: None)
    assert len(outcome["report"].rows) == len(values)
    s3, bucket = embedded.client("s3"), embedded.infra.bucket
    seen = sorted(json.loads(run_location(s3, bucket, "literal", r.run_id).child("train").read_bytes("argv.json"))[0]
                  for r in spec.runs())
    assert seen == sorted(f"--note={v}" for v in values)
    assert not Path("/tmp/trainfleet-pwned").exists()


def test_a_planted_wheel_is_replaced_and_the_campaign_completes(embedded, tmp_path):
    """A wrong file at the campaign's agent-wheel key (predictable: it names the wheel's SHA-256) is replaced
    at launch, so the instance's checksum passes and the run completes on its first attempt."""
    from instance_benchmarks.backends.packaging import build_wheel
    from instance_benchmarks.core.contract import agent_prefix

    wheel = build_wheel()
    s3, bucket = embedded.client("s3"), embedded.infra.bucket
    key = f"{agent_prefix('planted')}/{wheel.sha256}/{wheel.name}"
    s3.put_object(Bucket=bucket, Key=key, Body=b"PK\x03\x04 not trainfleet", Metadata={"sha256": wheel.sha256})
    make_git_repo(tmp_path / "tiny", {"train.py": "import json\nprint(json.dumps({'step': 1, 'loss': 0.1}))\n"})
    spec = bound_spec(spec_dict(campaign="planted", workload=None, repo=str(tmp_path / "tiny"), ref="main",
                                script="train.py", target=None, hyperparameters={}, max_attempts=1,
                                matrix={"instance_type": ["c5.xlarge"]}))
    outcome = runner.run_to_report(embedded, [spec], out=tmp_path / "out", log=lambda *_: None)
    assert outcome["report"].incomplete == [] and len(outcome["report"].rows) == 1
    [attempt] = read_json(run_location(s3, bucket, "planted", spec.runs()[0].run_id), "launch.json")["attempts"]
    assert attempt["outcome"] == "completed" and attempt["agent_wheel"]["key"] == key
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == wheel.path.read_bytes()


def test_bundled_workloads_from_a_fork(embedded, workloads_repo, tmp_path):
    spec = bound_spec(spec_dict(campaign="bundled", repo=str(workloads_repo), hyperparameters={"epochs": 3, "max_episode_steps": 60},
                                matrix={"instance_type": ["c5.xlarge", "m5.large"], "batch_size": [3, 5]}))
    outcome = runner.run_to_report(embedded, [spec], out=tmp_path, log=lambda *_: None)
    report = outcome["report"]
    assert len(report.rows) == 4 and report.incomplete == []
    for row in report.rows:
        assert row["measured_on"].startswith("local") and row["samples_per_s"] > 0
        root = 30 * 0.08 / 730  # the CPU image's 30 GiB gp3 root volume, billed with the instance
        assert row["usd_per_hour"] == pytest.approx({"c5.xlarge": 0.17, "m5.large": 0.096}[row["instance_type"]] + root)
        assert row["cost_usd"] >= 60 * row["usd_per_hour"] / 3600  # per-second billing, 60 s minimum
        assert row["mfu"] > 0  # FLOPs/sample from the workload's own result.json
    assert outcome["left_running"] == []
    assert (tmp_path / "best-model" / "model.pt").exists()
    assert {p.name for p in tmp_path.iterdir()} >= {"report.csv", "report.parquet", "report.md", "pareto.png", "curves.png"}
    metrics = [json.loads(line) for line in (tmp_path / "best-model" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 3


def test_a_broken_repository_fails_its_runs_and_says_why(embedded, tmp_path):
    make_git_repo(tmp_path / "broken", {"train.py": "raise SystemExit('no data here')\n"})
    spec = bound_spec(spec_dict(campaign="broken", workload=None, repo=str(tmp_path / "broken"), ref="main",
                                script="train.py", target=None, hyperparameters={}, max_attempts=2,
                                matrix={"instance_type": ["c5.xlarge"]}))
    outcome = runner.run_to_report(embedded, [spec], out=tmp_path / "out", log=lambda *_: None)
    [incomplete] = outcome["report"].incomplete
    assert incomplete["last_outcome"] == "failed" and incomplete["attempts"] == 2
    logs = run_location(embedded.client("s3"), embedded.infra.bucket, "broken", spec.runs()[0].run_id).child("logs/attempt-2")
    assert b"no data here" in logs.read_bytes("script.log")


def test_sagemaker_runs_land_beside_ec2_runs_in_one_report(embedded, workloads_repo, tmp_path):
    pytest.importorskip("sagemaker.train", reason="optional extra: pip install '.[sagemaker]'")
    hyper = {"epochs": 3, "max_episode_steps": 60}
    common = dict(campaign="mixed", repo=str(workloads_repo), hyperparameters=hyper,
                  matrix={"instance_type": ["c5.xlarge"], "batch_size": [3, 5]})
    ec2 = bound_spec(spec_dict(**common))
    sm = bound_spec(spec_dict(**common, backend="sagemaker", sagemaker={"max_wait_minutes": 60}))
    outcome = runner.run_to_report(embedded, [ec2, sm], out=tmp_path, log=lambda *_: None)
    rows = outcome["report"].rows
    assert sorted(r["backend"] for r in rows) == ["ec2", "ec2", "sagemaker", "sagemaker"]
    for row in rows:
        assert row["samples_per_s"] > 0 and row["final_metric"] is not None and row["billable_seconds"] > 0
    sagemaker_rows = [r for r in rows if r["backend"] == "sagemaker"]
    assert all(r["usd_per_hour"] == 0.204 and r["spot_savings"] == 0 for r in sagemaker_rows)
    assert outcome["left_running"] == []
    assert "sagemaker" in (tmp_path / "report.md").read_text()


def test_a_foreign_repository_runs_unchanged_on_sagemaker(embedded, tmp_path):
    """The same bring-your-own campaign as SageMaker jobs: the entry point clones nothing (the launcher
    staged the repository), sets up, runs the script with the same contract and reads its metrics."""
    pytest.importorskip("sagemaker.train", reason="optional extra: pip install '.[sagemaker]'")
    example = ROOT / "examples" / "bring-your-own"
    commit = make_git_repo(tmp_path / "mine", {name: (example / name).read_text() for name in ("train.py", "requirements.txt")})
    common = dict(campaign="byo-sm", workload=None, repo=str(tmp_path / "mine"), ref="main", script="train.py",
                  hyperparameters={"epochs": 3}, target={"metric": "val_accuracy", "value": 0.95},
                  matrix={"instance_type": ["c5.xlarge"], "batch_size": [256]})
    specs = [bound_spec(spec_dict(**common)), bound_spec(spec_dict(**common, backend="sagemaker"))]
    outcome = runner.run_to_report(embedded, specs, out=tmp_path / "out", log=lambda *_: None)
    rows = outcome["report"].rows
    assert sorted(r["backend"] for r in rows) == ["ec2", "sagemaker"]
    for row in rows:
        assert row["code"] == commit and row["final_metric"] > 0.9 and row["samples_per_s"] > 0
    s3, bucket = embedded.client("s3"), embedded.infra.bucket
    [sagemaker_run] = [r for r in rows if r["backend"] == "sagemaker"][:1]
    result = read_json(run_location(s3, bucket, "byo-sm", sagemaker_run["run_id"]), "result.json")
    assert set(result["train_artifacts"]) == {"model.pt"} and result["setup_seconds"] >= 0
    assert result["host"]["stand_in"] and result["host"]["label"].endswith(" for ml.c5.xlarge")
    assert result["backend"]["name"] == "sagemaker" and result["backend"]["timing_source"].startswith("measured by local ")
    assert sagemaker_run["stand_in"] and sagemaker_run["measured_on"] == result["host"]["label"]
    files = download_run(s3, bucket, "byo-sm", sagemaker_run["run_id"], tmp_path / "model")
    assert files["model.pt"].stat().st_size > 0
