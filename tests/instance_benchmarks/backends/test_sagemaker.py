"""backend: sagemaker - spec validation always; SDK paths when the optional extra is installed (CI installs it)."""
from __future__ import annotations

import io
import json
import signal
import sys
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from instance_benchmarks import runner
from instance_benchmarks.backends.sagemaker.backend import SageMakerBackend
from instance_benchmarks.campaign_file import parse_spec
from instance_benchmarks.measure.record_model import parse_document
from instance_benchmarks.campaigns.store import read_json, record_campaign, run_location, write_json
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.environment import Environment
from tests.instance_benchmarks.conftest import bound_spec, spec_dict


def sm_spec(**changes):
    return spec_dict(**{"backend": "sagemaker", "sagemaker": {"max_wait_minutes": 60}, **changes})


def test_sagemaker_spec_and_run_ids():
    spec = parse_spec(sm_spec())
    # no image_uri: each run gets the PyTorch DLC for its own instance type at launch (test_sagemaker_images.py)
    assert spec.backend_settings["max_wait_minutes"] == 60 and spec.backend_settings["image_uri"] is None
    mine = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:1"
    assert parse_spec(sm_spec(sagemaker={"image_uri": mine})).backend_settings["image_uri"] == mine
    ec2_ids = {r.run_id for r in parse_spec(spec_dict()).runs()}
    assert all(r.run_id.startswith("sm-") and r.run_id not in ec2_ids for r in spec.runs())


@pytest.mark.parametrize("changes, message", [
    ({"sagemaker": {"max_wait_minutes": 10}}, "must be >= max_runtime_minutes"),
    ({"sagemaker": {"role_arn": "not-an-arn"}}, "not an IAM role ARN"),
    ({"sagemaker": {"image": "x"}}, "sagemaker: unknown key 'image' \\(did you mean image_uri\\?\\)"),
    ({"sagemaker": {"image_uri": "two words"}}, "must be an image URI"),
    ({"sagemaker": {"image_uri": ""}}, "must be an image URI"),
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
    [ended] = summary.ended  # for the runner to record as torn down, billed from the job's creation
    assert ended["run_id"] == "sm-a" and ended["resource"] == "tf-sm-a-a1" and ended["key"] == "job_name"
    assert ended["started_at"] == "2026-11-23T00:00:00+00:00" and ended["attempt"] == 1


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


# ----------------------------------------------------------------------------- the container entry (no SDK)
def _fake_python(tmp_path, monkeypatch, *, pip_exit: int = 0):
    """sys.executable for the entry point: `-m pip ...` is recorded (and exits `pip_exit`); anything else runs
    in the real interpreter. Returns the file the pip calls are written to."""
    calls = tmp_path / "pip-calls"
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f"""#!/bin/bash
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "$PWD $*" >> {calls}; exit {pip_exit}; fi
exec {sys.executable} "$@"
""")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    return calls


def _run_entry(tmp_path, monkeypatch, task: dict, repo_files: dict[str, str]) -> tuple[int, Path]:
    """The code channel as the launcher stages it for a repository's task, and the entry point run on it."""
    from instance_benchmarks.agent import container
    from instance_benchmarks.core.contract import TASK_FILE

    code = tmp_path / "code"
    for name, text in {"train.py": "import os, pathlib\nprint('loss=0.5')\n"
                       "pathlib.Path(os.environ['TRAINFLEET_OUTPUT_DIR'], 'model.pt').write_text('w')\n",
                       **repo_files}.items():
        (code / "repo" / name).parent.mkdir(parents=True, exist_ok=True)
        (code / "repo" / name).write_text(text)
    (code / TASK_FILE).write_text(json.dumps({
        "repo": "https://example.com/r.git", "ref": "main", "workdir": None, "setup": None, "script": "train.py",
        "run": None, "args": [], "env": {}, "metric_definitions": [], "benchmark": None, "run_id": "sm-x",
        "instance_type": "c5.xlarge", "max_runtime_minutes": 5, **task}))
    model = tmp_path / "opt-ml" / "model"
    monkeypatch.setenv("SM_MODEL_DIR", str(model))
    monkeypatch.delenv("TRAINFLEET_CHECKPOINT_DIR", raising=False)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        return container.main(code), model
    finally:
        signal.signal(signal.SIGTERM, handler)


def test_the_entry_point_installs_the_repositorys_requirements(tmp_path, monkeypatch):
    """A repository's task: its requirements.txt is installed by trainfleet's entry point (not the SDK's
    SourceCode.requirements, see test_requirements_go_through_one_mechanism_per_job), before the script."""
    calls = _fake_python(tmp_path, monkeypatch)
    exit_code, model = _run_entry(tmp_path, monkeypatch, {}, {"requirements.txt": "tabulate==0.9.0\n"})
    repo = tmp_path / "code" / "repo"
    assert exit_code == 0 and calls.read_text().split() == [
        str(repo), "-m", "pip", "install", "-q", "-r", str(repo / "requirements.txt")]
    assert (model / "model.pt").read_text() == "w"
    result = json.loads((model / "trainfleet" / "task-result.json").read_text())
    assert result["exit_code"] == 0 and result["setup_seconds"] >= 0


def test_the_entry_point_prefers_the_workdirs_requirements_and_setup_commands_replace_them(tmp_path, monkeypatch):
    calls = _fake_python(tmp_path, monkeypatch)
    files = {"requirements.txt": "a\n", "sub/requirements.txt": "b\n", "sub/train.py": "print('loss=1')\n"}
    first, second = tmp_path / "workdir", tmp_path / "setup"
    assert _run_entry(first, monkeypatch, {"workdir": "sub"}, files)[0] == 0
    assert calls.read_text().split()[-1] == str(first / "code" / "repo" / "sub" / "requirements.txt")
    calls.unlink()
    exit_code, model = _run_entry(second, monkeypatch, {"setup": "echo set up; touch ../setup-ran"}, files)
    assert exit_code == 0 and not calls.exists() and (second / "code" / "setup-ran").is_file()
    assert "set up" in (model / "trainfleet" / "setup.log").read_text()


def test_a_failing_install_fails_the_job_before_the_script(tmp_path, monkeypatch):
    calls = _fake_python(tmp_path, monkeypatch, pip_exit=3)
    exit_code, model = _run_entry(tmp_path, monkeypatch, {}, {"requirements.txt": "nope\n"})
    assert exit_code == 1 and calls.is_file() and not (model / "model.pt").exists()
    assert not (model / "trainfleet" / "task-result.json").exists()



def test_a_task_that_prints_no_metric_completes_the_job_as_no_metrics(tmp_path, monkeypatch):
    """The job completes (so that its logs reach collect) and task-result.json says why it is no result."""
    exit_code, model = _run_entry(tmp_path, monkeypatch, {
        "metric_definitions": [{"name": "val_mse", "regex": "val_mse=([0-9.]+)"}], "metrics_grace_seconds": 60.0},
        {"train.py": "print('val_mse 0.05')\n"})
    result = json.loads((model / "trainfleet" / "task-result.json").read_text())
    assert exit_code == 0 and result["exit_code"] == 0
    assert result["no_metrics"].startswith("no metrics: ") and "'val_mse 0.05' did not match" in result["no_metrics"]


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
        assert job["AlgorithmSpecification"]["TrainingImage"] == \
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.10.0-cpu-py313"
        assert job["StoppingCondition"]["MaxWaitTimeInSeconds"] >= job["StoppingCondition"]["MaxRuntimeInSeconds"] == 1800
        assert job["CheckpointConfig"]["S3Uri"] == f"s3://{bucket}/campaigns/sweep/runs/{entry['run_id']}/checkpoints"
        hyper = {k: json.loads(v) if v.startswith('"') else v for k, v in job["HyperParameters"].items()}
        assert hyper["output"] == "/opt/ml/model" and hyper["checkpoint"] == "/opt/ml/checkpoints"
        assert hyper["hidden_layers"] == "32,16"
        record = read_json(run_location(s3, bucket, "sweep", entry["run_id"]), "launch.json")
        assert record["attempts"][0]["job_name"] == entry["job_name"]
        assert entry["job_name"].startswith(f"tf-{entry['run_id']}-a1-")  # the job CreateTrainingJob made
        assert record["attempts"][0]["image"] == job["AlgorithmSpecification"]["TrainingImage"]
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


def _collect_completed_job(s3, bucket: str, record: dict, instance_type: str, *, billable: int, spot: bool = False) -> None:
    """collect_job on the run sm-r1 of `sweep`, its job Completed after 100 s of training (botocore Stubber:
    moto's describe_training_job has no billable seconds)."""
    from instance_benchmarks.backends.sagemaker.jobs import collect_job

    client = boto3.client("sagemaker", region_name="us-east-1")
    stopping = {"MaxRuntimeInSeconds": 1800, **({"MaxWaitTimeInSeconds": 3600} if spot else {})}
    with Stubber(client) as stub:
        stub.add_response("describe_training_job", {
            "TrainingJobName": "tf-sm-r1-a1-2026", "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/x",
            "ModelArtifacts": {"S3ModelArtifacts": "s3://x/model.tar.gz"}, "TrainingJobStatus": "Completed",
            "SecondaryStatus": "Completed", "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "img"},
            "ResourceConfig": {"InstanceType": f"ml.{instance_type}", "InstanceCount": 1, "VolumeSizeInGB": 30},
            "StoppingCondition": stopping, "EnableManagedSpotTraining": spot,
            "CreationTime": datetime(2026, 11, 22, tzinfo=timezone.utc),
            "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/campaigns/sweep/runs/sm-r1/sagemaker"},
            "TrainingTimeInSeconds": 100, "BillableTimeInSeconds": billable})
        assert collect_job(client, s3, bucket, "sweep", "sm-r1", record, peak_tflops={"fp32": 31.2, "fp16": 70.0})


def test_collect_reports_billable_vs_training_seconds(aws, s3, bucket):
    from hashlib import sha256

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
    _collect_completed_job(s3, bucket, record, "g5.xlarge", billable=30, spot=True)
    result = read_json(location, "result.json")
    parse_document("result.json", result, run_id="sm-r1")  # the one record's model reads it
    assert record["attempts"][0]["outcome"] == "completed" and result["host"]["peak_tflops"] == 31.2
    assert result["host"] == {"label": "sagemaker ml.g5.xlarge", "stand_in": False, "peak_tflops": 31.2,
                              "peak_source": "catalog g5.xlarge fp32"}
    assert (result["run_seconds"], result["billable_seconds"]) == (100.0, 30.0)
    assert result["spot_savings"] == pytest.approx(0.7)
    assert result["cost_usd"] == pytest.approx(30 * 1.408 / 3600)
    assert result["backend"] == {"name": "sagemaker", "job_name": "tf-sm-r1-a1-2026",
                                 "timing_source": "describe_training_job"}
    assert location.child("train").read_bytes("model.pt") == model


def test_collect_settles_a_no_metrics_task_without_a_result(aws, s3, bucket):
    record = {"hyperparameters": {}, "attempts": [{
        "attempt": 1, "backend": "sagemaker", "job_name": "tf-sm-r1-a1-2026", "instance_type": "c5.xlarge",
        "market": "spot", "price": {"usd_per_hour": 0.2}, "outcome": "launched"}]}
    note = "no metrics: no output line matched metric_definitions (val_mse: regex 'val_mse=([0-9.]+)')"
    task_result = {"exit_code": 0, "benchmark_slice": False, "stop_reason": None, "setup_seconds": 1.0,
                   "script_seconds": 2.0, "no_metrics": note}
    s3.put_object(Bucket=bucket, Key="campaigns/sweep/runs/sm-r1/sagemaker/tf-sm-r1-a1-2026/output/model.tar.gz",
                  Body=_model_tar({"trainfleet/task-result.json": json.dumps(task_result).encode(),
                                   "trainfleet/script.log": b"val_mse 0.05\n"}))
    _collect_completed_job(s3, bucket, record, "c5.xlarge", billable=100)
    location = run_location(s3, bucket, "sweep", "sm-r1")
    [attempt] = record["attempts"]
    assert attempt["outcome"] == "no metrics" and attempt["note"] == note
    assert attempt["cost_usd"] == pytest.approx(100 * 0.2 / 3600)  # billed all the same
    assert read_json(location, "result.json") is None  # not a result: the run is incomplete, not retried
    assert location.child("logs/attempt-1").read_bytes("script.log") == b"val_mse 0.05\n"


# ----------------------------------------------------------------------------- requirements, one way per job
def test_requirements_go_through_one_mechanism_per_job(sm_env, tmp_path, bucket):
    """A bundled workload's requirements go to SourceCode(requirements=...) (the SDK installs them before its
    script); a repository's task passes none: trainfleet's entry point installs its requirements.txt."""
    from sagemaker.core.helper.session_helper import Session

    from instance_benchmarks.backends.sagemaker import jobs
    from tests.instance_benchmarks.conftest import make_git_repo

    session = Session(boto_session=boto3.Session(region_name="us-east-1"), default_bucket=bucket)
    common = dict(bucket=bucket, role_arn="arn:aws:iam::123456789012:role/sm", attempt=1, image="img:1", session=session)
    spec = parse_spec(sm_spec(matrix={"instance_type": ["c5.xlarge"], "batch_size": [3]}))
    [run] = spec.runs()
    staged = tmp_path / "workload"
    jobs.stage_source(staged, spec, run)
    trainer = jobs.build_trainer(spec, run, source_dir=staged, **common)
    assert trainer.source_code.requirements == "training_scripts/requirements.txt"
    assert "gymnasium" in (staged / trainer.source_code.requirements).read_text()  # cartpole_pg imports it

    make_git_repo(tmp_path / "mine", {"train.py": "print('loss=1')\n", "requirements.txt": "tabulate\n"})
    spec = parse_spec(sm_spec(workload=None, repo=str(tmp_path / "mine"), ref="main", script="train.py",
                              target=None, matrix={"instance_type": ["c5.xlarge"], "batch_size": [3]}))
    [run] = spec.runs()
    staged = tmp_path / "repo-task"
    jobs.stage_source(staged, spec, run)
    trainer = jobs.build_trainer(spec, run, source_dir=staged, **common)
    assert trainer.source_code.requirements is None and trainer.source_code.entry_script == "trainfleet_entry.py"
    assert (staged / "repo" / "requirements.txt").is_file()  # installed by agent/container.py (tests above)


def test_setup_commands_are_refused_for_a_bundled_workload_on_sagemaker():
    with pytest.raises(TrainfleetInputError, match="does not run setup commands for a bundled workload"):
        parse_spec(sm_spec(setup="pip install tabulate"))


# ----------------------------------------------------------------------------- launch refusals
def _refuse_create_training_job(env, monkeypatch, code: str, message: str) -> list:
    """The SDK creates its SageMaker client from env.session(): answer its CreateTrainingJob with an error
    (as botocore's Stubber does, from a before-call handler), every other call goes to moto."""
    calls, make_session = [], env.session

    def refuse(params, **_):
        calls.append(json.loads(params["body"]))  # the request as serialised for the wire
        return type("Response", (), {"status_code": 400})(), {
            "Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}

    def session():
        boto_session = make_session()
        boto_session.events.register("before-call.sagemaker.CreateTrainingJob", refuse)
        return boto_session

    monkeypatch.setattr(env, "session", session)
    return calls


def _launch_one(env, instance_type="g5.xlarge", market="spot"):
    from instance_benchmarks.catalog import load_catalog

    spec = parse_spec(sm_spec(market=market, matrix={"instance_type": [instance_type], "batch_size": [3]}))
    [run] = spec.runs()
    catalog = load_catalog()
    backend = SageMakerBackend(env)
    return backend.launch(spec, run, 1, backend.quote(spec, catalog.get(instance_type), market, catalog), catalog)


QUOTA_MESSAGE = ("The account-level service limit 'ml.g5.xlarge for spot training job usage' is 0 Instances, with "
                 "current utilization of 0 Instances and a request delta of 1 Instances. Please use AWS Service "
                 "Quotas to request an increase for this quota.")


def test_a_quota_refusal_is_launch_refused_naming_the_quota(sm_env, monkeypatch):
    from instance_benchmarks.backends.base import LaunchRefused

    calls = _refuse_create_training_job(sm_env, monkeypatch, "ResourceLimitExceeded", QUOTA_MESSAGE)
    with pytest.raises(LaunchRefused) as refused:
        _launch_one(sm_env)
    assert len(calls) == 1 and calls[0]["TrainingJobName"].startswith("tf-sm-g5-xlarge-")
    assert refused.value.code == "ResourceLimitExceeded" and refused.value.kind == LaunchRefused.QUOTA
    assert "raise 'ml.g5.xlarge for spot training job usage' for Amazon SageMaker in Service Quotas" in str(refused.value)
    assert boto3.client("sagemaker", region_name="us-east-1").list_training_jobs()["TrainingJobSummaries"] == []


def test_a_quota_message_without_the_name_gets_the_types_quota(sm_env, monkeypatch):
    from instance_benchmarks.backends.base import LaunchRefused

    _refuse_create_training_job(sm_env, monkeypatch, "ResourceLimitExceeded", "You have exceeded a limit")
    with pytest.raises(LaunchRefused, match="raise 'ml.c5.xlarge for training job usage'"):
        _launch_one(sm_env, "c5.xlarge", market="on-demand")


@pytest.mark.parametrize("code", ["CapacityError", "InsufficientCapacityError"])
def test_a_capacity_refusal_is_launch_refused(sm_env, monkeypatch, code):
    from instance_benchmarks.backends.base import LaunchRefused

    _refuse_create_training_job(sm_env, monkeypatch, code, "Unable to provision requested ML compute capacity")
    with pytest.raises(LaunchRefused) as refused:
        _launch_one(sm_env)
    assert refused.value.code == code and refused.value.kind == LaunchRefused.CAPACITY
    assert boto3.client("sagemaker", region_name="us-east-1").list_training_jobs()["TrainingJobSummaries"] == []


def test_other_create_training_job_errors_propagate(sm_env, monkeypatch):
    from botocore.exceptions import ClientError

    _refuse_create_training_job(sm_env, monkeypatch, "ValidationException", "bad role")
    with pytest.raises(ClientError, match="bad role"):
        _launch_one(sm_env)


def test_the_runner_records_a_refused_sagemaker_launch(sm_env, monkeypatch, s3, bucket):
    _refuse_create_training_job(sm_env, monkeypatch, "ResourceLimitExceeded", QUOTA_MESSAGE)
    spec = bound_spec(sm_spec(matrix={"instance_type": ["g5.xlarge"], "batch_size": [3]}))
    summary = runner.launch(sm_env, spec)
    [run] = spec.runs()
    assert summary.launched == [] and [r["run_id"] for r in summary.refused] == [run.run_id]
    [attempt] = read_json(run_location(s3, bucket, "sweep", run.run_id), "launch.json")["attempts"]
    assert attempt["outcome"] == "launch_refused" and attempt["cost_usd"] == 0.0
    assert attempt["error"].startswith("ResourceLimitExceeded: The account-level service limit")


def test_the_local_executor_installs_sourcecode_requirements_with_the_sdks_installer(tmp_path):
    """The embedded default plays sm_train.sh's install step: the SDK's install_requirements.py, in the code
    directory (here the requirement is already satisfied, so pip needs no network)."""
    import importlib.util
    import shutil

    from instance_benchmarks.embedded.sagemaker_executor import LocalSageMakerExecutor

    [sdk_root] = importlib.util.find_spec("sagemaker").submodule_search_locations  # without importing the SDK

    scripts, code = tmp_path / "input/data/sm_drivers/scripts", tmp_path / "input/data/code"
    scripts.mkdir(parents=True)
    (code / "training_scripts").mkdir(parents=True)
    shutil.copy(Path(sdk_root) / "core/utils/install_requirements.py", scripts / "install_requirements.py")
    (code / "training_scripts/requirements.txt").write_text("gymnasium>=1.0\n")
    done = LocalSageMakerExecutor.install_requirements(tmp_path, code, "training_scripts/requirements.txt",
                                                       {"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and "Requirement already satisfied: gymnasium" in done.stdout
    (code / "training_scripts/requirements.txt").write_text("--no-index\ntrainfleet-no-such-package==0\n")
    assert LocalSageMakerExecutor.install_requirements(tmp_path, code, "training_scripts/requirements.txt",
                                                       {"PATH": "/usr/bin:/bin"}).returncode != 0


@pytest.mark.parametrize("attempt", [1, 3, 12])
def test_long_run_ids_keep_the_attempt_in_the_job_name(attempt):
    """Run ids reach 63 characters (readable_run_id); ModelTrainer names the job `<base>-<YYYYmmddHHMMSS>`
    cut at 63 (sagemaker.train.utils._get_unique_name). The attempt must survive both cuts, or crash
    recovery (`collect`) and teardown cannot tell which attempt a job was."""
    pytest.importorskip("sagemaker.train")
    from sagemaker.train.utils import _get_unique_name

    from instance_benchmarks.backends.sagemaker.jobs import job_attempt, job_base_name

    run_id = ("sm-g5-12xlarge-" + "lr0p001-bs1024-" * 4)[:54] + "-8e42cf7e"
    assert len(run_id) == 63
    created = _get_unique_name(job_base_name(run_id, attempt))
    assert len(created) <= 63 and job_attempt(created) == attempt
    assert created.startswith(job_base_name(run_id, attempt))  # created_job_name's check
    # two long ids that differ only in their tail (the config hash) keep distinct names
    assert job_base_name(run_id[:-8] + "00000000", attempt) != job_base_name(run_id, attempt)
    assert job_base_name("sm-a", attempt) == f"tf-sm-a-a{attempt}"


def test_teardown_reads_the_attempt_of_a_long_run_ids_job(aws):
    from sagemaker.train.utils import _get_unique_name

    from instance_benchmarks.backends.sagemaker.jobs import job_base_name

    client = boto3.client("sagemaker", region_name="us-east-1")
    env = Environment("us-east-1")
    env._clients["sagemaker"] = client
    run_id = "sm-p4d-24xlarge-" + "x" * 39 + "8e42cf7e"
    name = _get_unique_name(job_base_name(run_id, 2))
    job = _job_summary(name, "InProgress")
    with Stubber(client) as stub:
        stub.add_response("list_training_jobs", {"TrainingJobSummaries": [job]}, {"StatusEquals": "InProgress"})
        stub.add_response("list_tags", {"Tags": [{"Key": "trainfleet:campaign", "Value": "sweep"},
                                                 {"Key": "trainfleet:run", "Value": run_id}]},
                          {"ResourceArn": job["TrainingJobArn"]})
        stub.add_response("stop_training_job", {}, {"TrainingJobName": name})
        [ended] = SageMakerBackend(env).teardown("sweep").ended
    assert ended["run_id"] == run_id and ended["attempt"] == 2
