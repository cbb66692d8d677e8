"""backend: sagemaker - spec validation always; SDK paths when the optional extra is installed (CI installs it)."""
from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber

from instance_benchmarks import runner
from instance_benchmarks.backends.sagemaker.backend import SageMakerBackend
from instance_benchmarks.campaigns.spec import parse_spec
from instance_benchmarks.campaigns.store import read_json, record_campaign, run_location, write_json
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.environment import Environment
from tests.instance_benchmarks.conftest import spec_dict


def sm_spec(**changes):
    return spec_dict(**{"backend": "sagemaker", "sagemaker": {"max_wait_minutes": 60}, **changes})


def test_sagemaker_spec_and_run_ids():
    spec = parse_spec(sm_spec())
    assert spec.backend_settings["max_wait_minutes"] == 60 and "pytorch-training" in spec.backend_settings["image_uri"]
    ec2_ids = {r.run_id for r in parse_spec(spec_dict()).runs()}
    assert all(r.run_id.startswith("sm-") and r.run_id not in ec2_ids for r in spec.runs())


@pytest.mark.parametrize("changes, message", [
    ({"sagemaker": {"max_wait_minutes": 10}}, "must be >= max_runtime_minutes"),
    ({"sagemaker": {"role_arn": "not-an-arn"}}, "not an IAM role ARN"),
    ({"sagemaker": {"image": "x"}}, "sagemaker must be"),
    ({"matrix": {"instance_type": ["t3.micro"]}}, "no SageMaker training price for ml.t3.micro"),
])
def test_bad_sagemaker_specs(changes, message):
    with pytest.raises(TrainfleetInputError, match=message):
        parse_spec(sm_spec(**changes))


def test_sagemaker_section_needs_the_backend():
    with pytest.raises(TrainfleetInputError, match="needs backend: sagemaker"):
        parse_spec(spec_dict(sagemaker={"max_wait_minutes": 60}))


def _job_summary(name: str, status: str) -> dict:
    return {"TrainingJobName": name, "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
            "CreationTime": datetime(2026, 11, 23, tzinfo=timezone.utc), "TrainingJobStatus": status}


def test_teardown_stops_the_campaigns_running_jobs_found_by_tag(aws):
    """moto neither runs nor stops training jobs, so the SageMaker API is stubbed: one running job of
    this campaign, one of another campaign; teardown stops exactly the first, and says so."""
    client = boto3.client("sagemaker", region_name="us-east-1")
    env = Environment("us-east-1")
    env._clients["sagemaker"] = client
    mine, other = _job_summary("tf-sm-a-a1", "InProgress"), _job_summary("tf-sm-b-a1", "InProgress")
    with Stubber(client) as stub:
        stub.add_response("list_training_jobs", {"TrainingJobSummaries": [mine, other]}, {"StatusEquals": "InProgress"})
        stub.add_response("list_tags", {"Tags": [{"Key": "trainfleet:campaign", "Value": "sweep"},
                                                 {"Key": "trainfleet:run", "Value": "sm-a"}]},
                          {"ResourceArn": mine["TrainingJobArn"]})
        stub.add_response("list_tags", {"Tags": [{"Key": "trainfleet:campaign", "Value": "elsewhere"}]},
                          {"ResourceArn": other["TrainingJobArn"]})
        stub.add_response("stop_training_job", {}, {"TrainingJobName": "tf-sm-a-a1"})
        summary = SageMakerBackend(env).teardown("sweep")
        stub.assert_no_pending_responses()
    assert summary.backend == "sagemaker" and summary.stopped == ["tf-sm-a-a1"]


def test_status_and_runner_teardown_cover_sagemaker_campaigns(aws, s3, bucket, monkeypatch):
    """A campaign that used SageMaker: the runner asks that backend for live runs and tears it down too."""
    env = Environment("us-east-1")
    env.__dict__["infra"] = type("Infra", (), {"bucket": bucket})()
    spec = parse_spec(sm_spec(matrix={"instance_type": ["c5.xlarge"], "batch_size": [3]}))
    record_campaign(s3, bucket, spec, {})
    [run] = spec.runs()
    write_json(run_location(s3, bucket, "sweep", run.run_id), "launch.json", {"run_id": run.run_id, "label": run.label,
               "attempts": [{"attempt": 1, "backend": "sagemaker", "job_name": "tf-job", "instance_type": "c5.xlarge",
                             "market": "spot", "price": {"usd_per_hour": 0.204}, "cost_usd": None, "outcome": "launched",
                             "launched_at": "2026-11-23T10:00:00+00:00"}]})
    from instance_benchmarks.backends.base import RunState, TeardownSummary

    stopped = []
    monkeypatch.setattr(SageMakerBackend, "live", lambda self, c: {run.run_id: RunState(run.run_id, "tf-job", "InProgress")}
                        if not stopped else {})
    monkeypatch.setattr(SageMakerBackend, "teardown", lambda self, c: stopped.append(c) or TeardownSummary("sagemaker", ["tf-job"]))
    monkeypatch.setattr(SageMakerBackend, "collect", lambda self, spec, run_id, record: False)
    [row] = runner.status_rows(env, "sweep")
    assert row["backend"] == "sagemaker" and row["state"] == "InProgress" and row["resource"] == "tf-job"
    assert row["cost_usd"] > 0  # billed to now while the job runs
    summaries = runner.teardown(env, "sweep")
    assert [s.backend for s in summaries] == ["sagemaker"] and stopped == ["sweep"]
    assert runner.live_runs(env, "sweep") == {}


# ----------------------------------------------------------------------------- with the SDK
sdk = pytest.importorskip("sagemaker.train", reason="optional extra: pip install '.[sagemaker]'")


@pytest.fixture
def sm_env(aws, monkeypatch, s3, bucket):
    """The AWS environment in in-process moto, with an execution role and the bucket."""
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    iam = boto3.client("iam", region_name="us-east-1")
    role = iam.create_role(RoleName="sm", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    env = Environment("us-east-1")
    env.__dict__["infra"] = type("Infra", (), {"bucket": bucket})()
    env.default_role = lambda principal: role
    return env


def test_launch_creates_managed_spot_jobs_with_checkpoints(sm_env, s3, bucket):
    spec = parse_spec(sm_spec(workload="tabular_mlp", target=None, matrix={"instance_type": ["c5.xlarge"], "batch_size": [3, 5]},
                              hyperparameters={"epochs": 3, "hidden_layers": [32, 16]}))
    sm = boto3.client("sagemaker", region_name="us-east-1")
    summary = runner.launch(sm_env, spec)
    assert len(summary.launched) == 2
    for entry in summary.launched:
        job = sm.describe_training_job(TrainingJobName=entry["job_name"])
        assert job["EnableManagedSpotTraining"] is True
        assert job["ResourceConfig"]["InstanceType"] == "ml.c5.xlarge"
        assert job["StoppingCondition"]["MaxWaitTimeInSeconds"] >= job["StoppingCondition"]["MaxRuntimeInSeconds"] == 1800
        assert job["CheckpointConfig"]["S3Uri"] == f"s3://{bucket}/campaigns/sweep/runs/{entry['run_id']}/checkpoints"
        hyper = {k: json.loads(v) if v.startswith('"') else v for k, v in job["HyperParameters"].items()}
        assert hyper["output"] == "/opt/ml/model" and hyper["checkpoint"] == "/opt/ml/checkpoints"
        assert hyper["hidden_layers"] == "32,16"
        record = read_json(run_location(s3, bucket, "sweep", entry["run_id"]), "launch.json")
        assert record["attempts"][0]["job_name"] == entry["job_name"]
    # moto marks jobs Completed at once; as on AWS, a job that completed but was not collected yet is
    # never launched again (its model has not been uploaded, so the run is not settled)
    again = runner.launch(sm_env, spec)
    assert again.launched == [] and len(sm.list_training_jobs()["TrainingJobSummaries"]) == 2


def test_over_budget_creates_no_job(sm_env, s3, bucket):
    spec = parse_spec(sm_spec(budget_usd=0.5, matrix={"instance_type": ["p3.2xlarge"], "batch_size": [3, 5]}))
    sm = boto3.client("sagemaker", region_name="us-east-1")
    with pytest.raises(TrainfleetInputError, match="budget"):
        runner.launch(sm_env, spec)
    assert sm.list_training_jobs()["TrainingJobSummaries"] == []


def _model_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_collect_reports_billable_vs_training_seconds(aws, s3, bucket):
    from hashlib import sha256

    from instance_benchmarks.backends.sagemaker.jobs import collect_job

    location = run_location(s3, bucket, "sweep", "sm-r1")
    record = {"hyperparameters": {"batch_size": 5}, "attempts": [{
        "attempt": 1, "backend": "sagemaker", "job_name": "tf-sm-r1-a1-2026", "instance_type": "g5.xlarge",
        "market": "spot", "price": {"usd_per_hour": 1.408}, "outcome": "launched"}]}
    metrics = b'{"step": 1, "samples_per_s": 10.0, "interval_s": 1.0, "sec_per_step": 1.0, "train_seconds": 1.0, "loss": 1.0}\n'
    model = b"weights"
    train_result = {"status": "complete", "primary_metric": "final10_reward", "higher_is_better": True,
                    "train_seconds": 80.0, "train_flops_per_sample": 1e6, "final": {"final10_reward": 400.0, "updates": 10},
                    "artifacts": {"model.pt": sha256(model).hexdigest(), "metrics.jsonl": sha256(metrics).hexdigest()}}
    s3.put_object(Bucket=bucket, Key="campaigns/sweep/runs/sm-r1/sagemaker/tf-sm-r1-a1-2026/output/model.tar.gz",
                  Body=_model_tar({"model.pt": model, "metrics.jsonl": metrics, "result.json": json.dumps(train_result).encode()}))
    client = boto3.client("sagemaker", region_name="us-east-1")
    now = datetime(2026, 11, 22, tzinfo=timezone.utc)
    with Stubber(client) as stub:
        stub.add_response("describe_training_job", {
            "TrainingJobName": "tf-sm-r1-a1-2026", "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/x",
            "ModelArtifacts": {"S3ModelArtifacts": "s3://x/model.tar.gz"}, "TrainingJobStatus": "Completed",
            "SecondaryStatus": "Completed", "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "img"},
            "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 1800, "MaxWaitTimeInSeconds": 3600}, "CreationTime": now,
            "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/campaigns/sweep/runs/sm-r1/sagemaker"},
            "TrainingTimeInSeconds": 100, "BillableTimeInSeconds": 30, "EnableManagedSpotTraining": True})
        assert collect_job(client, s3, bucket, "sweep", "sm-r1", record, peak_tflops={"fp32": 31.2, "fp16": 70.0})
    result = read_json(location, "result.json")
    assert record["attempts"][0]["outcome"] == "completed" and result["peak_tflops"] == 31.2
    assert (result["training_seconds"], result["billable_seconds"]) == (100.0, 30.0)
    assert result["spot_savings"] == pytest.approx(0.7)
    assert result["cost_usd"] == pytest.approx(30 * 1.408 / 3600)
    assert result["timing_source"] == "describe_training_job"
    assert location.child("train").read_bytes("model.pt") == model
