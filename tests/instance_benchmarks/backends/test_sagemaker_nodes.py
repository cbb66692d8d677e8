"""`nodes: N` on backend sagemaker: a multi-node job under the SDK's torchrun distribution (InstanceCount N),
priced, budgeted and collected as N instances; refused with one line wherever it cannot run."""
from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime, timezone
from hashlib import sha256

import boto3
import pytest
from botocore.stub import Stubber

from instance_benchmarks import runner
from instance_benchmarks.campaign_file import parse_spec
from instance_benchmarks.campaigns.plan import estimate
from instance_benchmarks.campaigns.store import read_json, run_location
from instance_benchmarks.catalog import load_catalog
from instance_benchmarks.core.errors import TrainfleetInputError
from tests.instance_benchmarks.conftest import spec_dict

GPU_SPEC = {"backend": "sagemaker", "sagemaker": {"max_wait_minutes": 60}, "workload": "cifar10_resnet",
            "target": None, "hyperparameters": {"epochs": 2}}


def sm_spec(**changes) -> dict:
    return spec_dict(**{**GPU_SPEC, "matrix": {"instance_type": ["g5.12xlarge"], "batch_size": [512]}, **changes})


# ----------------------------------------------------------------------------- the spec (no SDK needed)
@pytest.mark.parametrize("nodes", [0, 17, -1, 2.0, "2", True])
def test_nodes_must_be_a_whole_number_from_1_to_16(nodes):
    with pytest.raises(TrainfleetInputError, match=rf"nodes must be a whole number from 1 to 16, got {nodes!r}"):
        parse_spec(sm_spec(nodes=nodes))


def test_nodes_are_refused_on_the_ec2_backend():
    with pytest.raises(TrainfleetInputError, match="nodes: 2 needs backend: sagemaker"):
        parse_spec(spec_dict(workload="cifar10_resnet", target=None, nodes=2,
                             matrix={"instance_type": ["g5.12xlarge"], "batch_size": [512]}))
    assert parse_spec(spec_dict(nodes=1)).nodes == 1  # one node is what every backend runs


@pytest.mark.parametrize("changes", [
    {"workload": "cartpole_pg", "target": None, "hyperparameters": {}},  # not on the DDP path
    {"workload": None, "script": "train.py", "hyperparameters": {}},     # a repository's own script
])
def test_nodes_need_a_workload_on_the_ddp_path(changes):
    with pytest.raises(TrainfleetInputError, match="nodes: 3 runs a bundled workload under torchrun: one of"):
        parse_spec(sm_spec(nodes=3, matrix={"instance_type": ["g5.12xlarge"], "batch_size": [64]}, **changes))


def test_nodes_give_their_own_run_ids_and_one_node_keeps_the_old_ones():
    one, default, two = (parse_spec(sm_spec(**extra)).runs() for extra in ({"nodes": 1}, {}, {"nodes": 2}))
    assert [r.run_id for r in one] == [r.run_id for r in default]
    assert {r.run_id for r in two}.isdisjoint(r.run_id for r in one)


def test_the_estimate_and_the_budget_count_every_instance():
    from instance_benchmarks.backends.sagemaker.backend import SageMakerBackend

    catalog = load_catalog()
    instance = catalog.get("g5.12xlarge")
    backend = SageMakerBackend.__new__(SageMakerBackend)  # quote() reads the catalog only
    worst = {}
    for nodes in (1, 4):
        spec = parse_spec(sm_spec(nodes=nodes, budget_usd=1000))
        quote = backend.quote(spec, instance, "spot", catalog)
        assert quote.usd_per_hour == pytest.approx(nodes * instance.sagemaker_price("us-east-1"))
        worst[nodes] = estimate(spec, {"g5.12xlarge": quote}).worst_case_usd
    assert worst[1] == pytest.approx(instance.sagemaker_price("us-east-1") * 0.5, rel=1e-3)  # 30 min watchdog
    assert worst[4] == pytest.approx(4 * worst[1])
    assert "4 instances at $7.0900/h each" in backend.quote(parse_spec(sm_spec(nodes=4)), instance, "spot",
                                                            catalog).source


# ----------------------------------------------------------------------------- with the SDK
sdk = pytest.importorskip("sagemaker.train", reason="optional extra: pip install '.[sagemaker]'")


@pytest.fixture
def sm_env(aws, monkeypatch, s3, bucket):
    from instance_benchmarks.environment import Environment

    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    role = boto3.client("iam", region_name="us-east-1").create_role(
        RoleName="sm", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    env = Environment("us-east-1")
    env.__dict__["infra"] = type("Infra", (), {"bucket": bucket})()
    env.default_role = lambda principal: role
    return env


def _record_create_training_job(env, monkeypatch) -> list[dict]:
    """Every CreateTrainingJob request the SDK sends, as serialised for the wire; the call then goes on to moto."""
    requests, make_session = [], env.session

    def record(params, **_):
        requests.append(json.loads(params["body"]))

    def session():
        boto_session = make_session()
        boto_session.events.register("before-call.sagemaker.CreateTrainingJob", record)
        return boto_session

    monkeypatch.setattr(env, "session", session)
    return requests


def _drivers(s3, request: dict) -> dict[str, str]:
    """The SDK's sm_drivers channel of a request: what the container runs (sm_train.sh, distributed.json)."""
    [channel] = [c for c in request["InputDataConfig"] if c["ChannelName"] == "sm_drivers"]
    bucket, _, prefix = channel["DataSource"]["S3DataSource"]["S3Uri"][len("s3://"):].partition("/")
    files = {}
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix.rstrip("/") + "/")["Contents"]:
        name = item["Key"][len(prefix.rstrip("/")) + 1:]
        if name in ("sm_train.sh", "distributed.json", "sourcecode.json"):
            files[name] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
    return files


@pytest.mark.parametrize("instance_type, nodes, processes", [
    ("g5.12xlarge", 3, 4),   # 3 nodes x 4 GPUs: torchrun, one process per GPU on each node
    ("c5.xlarge", 2, 1),     # a CPU type across 2 nodes: one process per node (gloo)
    ("g5.12xlarge", 1, 4),   # one node with 4 GPUs: torchrun within it, as the EC2 agent does
    ("g5.xlarge", 1, None),  # one GPU on one node: the script itself, no launcher
])
def test_the_create_training_job_request_runs_torchrun_on_n_instances(sm_env, monkeypatch, s3, bucket,
                                                                      instance_type, nodes, processes):
    requests = _record_create_training_job(sm_env, monkeypatch)
    spec = parse_spec(sm_spec(nodes=nodes, budget_usd=1000, matrix={"instance_type": [instance_type],
                                                                     "batch_size": [512]}))
    summary = runner.launch(sm_env, spec)
    [request] = requests
    [entry] = summary.launched
    assert request["ResourceConfig"]["InstanceType"] == f"ml.{instance_type}"
    assert request["ResourceConfig"]["InstanceCount"] == nodes
    assert request["TrainingJobName"] == entry["job_name"]
    drivers = _drivers(s3, request)
    assert json.loads(drivers["sourcecode.json"])["entry_script"] == "training_scripts/cifar10_resnet.py"
    if processes is None:
        assert json.loads(drivers["distributed.json"]) == {}
        assert "torchrun_driver.py" not in drivers["sm_train.sh"]
    else:
        assert json.loads(drivers["distributed.json"])["process_count_per_node"] == processes
        assert "distributed_drivers/torchrun_driver.py" in drivers["sm_train.sh"]
    # the launch records what the job is and what it costs an hour: every instance
    [attempt] = read_json(run_location(s3, bucket, "sweep", entry["run_id"]), "launch.json")["attempts"]
    assert attempt["nodes"] == nodes and attempt["torchrun_processes_per_node"] == processes
    per_instance = load_catalog().get(instance_type).sagemaker_price("us-east-1")
    assert attempt["price"]["usd_per_hour"] == pytest.approx(nodes * per_instance)


def test_a_budget_that_fits_one_node_refuses_four(sm_env, monkeypatch):
    requests = _record_create_training_job(sm_env, monkeypatch)
    one_node_worst = load_catalog().get("g5.12xlarge").sagemaker_price("us-east-1") * 0.5
    with pytest.raises(TrainfleetInputError, match="budget .* refused"):
        runner.launch(sm_env, parse_spec(sm_spec(nodes=4, budget_usd=round(2 * one_node_worst, 2))))
    assert requests == []
    assert boto3.client("sagemaker", region_name="us-east-1").list_training_jobs()["TrainingJobSummaries"] == []


def _model_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_multi_node_job_is_collected_as_n_instances(aws, s3, bucket):
    """Billable seconds x the cluster's price (InstanceCount x the instance's), MFU against the cluster's
    peak, and the world size the script ran with."""
    from instance_benchmarks.backends.sagemaker.backend import SageMakerBackend
    from instance_benchmarks.campaigns.store import write_json
    from instance_benchmarks.environment import Environment

    per_instance, nodes = 7.09, 2
    location = run_location(s3, bucket, "sweep", "sm-r1")
    record = {"hyperparameters": {"batch_size": 512}, "attempts": [{
        "attempt": 1, "backend": "sagemaker", "job_name": "tf-sm-r1-a1-2026", "instance_type": "g5.12xlarge",
        "market": "spot", "price": {"usd_per_hour": per_instance * nodes}, "outcome": "launched", "nodes": nodes}]}
    write_json(location, "launch.json", record)
    metrics = b'{"step": 10, "samples_per_s": 8000.0, "interval_s": 1.0, "sec_per_step": 0.064, "train_seconds": 1.0}\n'
    train_result = {"status": "complete", "workload": "cifar10_resnet", "primary_metric": "test_accuracy",
                    "higher_is_better": True, "train_seconds": 60.0, "train_flops_per_sample": 1e9, "world_size": 8,
                    "precision": "bf16", "final": {"test_accuracy": 0.9},
                    "artifacts": {"metrics.jsonl": sha256(metrics).hexdigest()}}
    s3.put_object(Bucket=bucket, Key="campaigns/sweep/runs/sm-r1/sagemaker/tf-sm-r1-a1-2026/output/model.tar.gz",
                  Body=_model_tar({"metrics.jsonl": metrics, "result.json": json.dumps(train_result).encode()}))
    client = boto3.client("sagemaker", region_name="us-east-1")
    env = Environment("us-east-1")
    env._clients["sagemaker"] = client
    env.__dict__["infra"] = type("Infra", (), {"bucket": bucket})()
    now = datetime(2026, 11, 22, tzinfo=timezone.utc)
    with Stubber(client) as stub:
        stub.add_response("describe_training_job", {
            "TrainingJobName": "tf-sm-r1-a1-2026", "TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/x",
            "ModelArtifacts": {"S3ModelArtifacts": "s3://x/model.tar.gz"}, "TrainingJobStatus": "Completed",
            "SecondaryStatus": "Completed", "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "i"},
            "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "InstanceCount": nodes, "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 1800, "MaxWaitTimeInSeconds": 3600}, "CreationTime": now,
            "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/campaigns/sweep/runs/sm-r1/sagemaker"},
            "TrainingTimeInSeconds": 100, "BillableTimeInSeconds": 40, "EnableManagedSpotTraining": True})
        assert SageMakerBackend(env).collect({"campaign": "sweep"}, "sm-r1", record)
    result = read_json(location, "result.json")
    assert result["cost_usd"] == pytest.approx(40 * nodes * per_instance / 3600)
    assert (result["nodes"], result["world_size"]) == (nodes, 8)
    cluster_peak = nodes * load_catalog().get("g5.12xlarge").peak_fp16_tflops
    assert result["host"]["peak_tflops"] == pytest.approx(cluster_peak)
    assert result["mfu"] == pytest.approx(1e9 * 8000.0 / (cluster_peak * 1e12))
