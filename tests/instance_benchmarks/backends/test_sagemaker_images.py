"""backend: sagemaker - the image each run gets: the PyTorch training DLC for its instance type, unless the
campaign's sagemaker.image_uri names one for every run (resolved from the SDK's bundled config: no AWS call)."""
from __future__ import annotations

import boto3
import pytest

from instance_benchmarks import runner
from instance_benchmarks.campaign_file import parse_spec
from instance_benchmarks.campaigns.store import read_json, run_location
from instance_benchmarks.catalog import load_catalog
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.environment import Environment
from tests.instance_benchmarks.backends.test_sagemaker import sm_spec

pytest.importorskip("sagemaker.train", reason="optional extra: pip install '.[sagemaker]'")
from instance_benchmarks.backends.sagemaker.jobs import PYTORCH_VERSION, default_image  # noqa: E402

DLC = "763104351884.dkr.ecr.{region}.amazonaws.com/pytorch-training"


@pytest.fixture
def sm_env(aws, monkeypatch, s3, bucket):
    """As in test_sagemaker.py: the AWS environment in in-process moto, with an execution role and the bucket."""
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    role = boto3.client("iam", region_name="us-east-1").create_role(RoleName="sm", AssumeRolePolicyDocument="{}")
    env = Environment("us-east-1")
    env.__dict__["infra"] = type("Infra", (), {"bucket": bucket})()
    env.default_role = lambda principal: role["Role"]["Arn"]
    return env


def test_a_gpu_type_gets_the_cuda_image_and_a_cpu_type_the_cpu_image():
    catalog = load_catalog()
    assert default_image("us-east-1", catalog.get("g5.xlarge")) == f"{DLC.format(region='us-east-1')}:2.10.0-gpu-py313"
    assert default_image("us-east-1", catalog.get("c5.xlarge")) == f"{DLC.format(region='us-east-1')}:2.10.0-cpu-py313"
    assert default_image("eu-west-1", catalog.get("g4dn.xlarge")).startswith(DLC.format(region="eu-west-1") + ":")


def test_every_catalog_type_sagemaker_trains_on_gets_an_image_of_its_kind():
    catalog = load_catalog()
    for name, instance in catalog.instances.items():
        for region in instance.sagemaker_usd_per_hour:
            processor = "gpu" if instance.is_gpu else "cpu"
            assert f":{PYTORCH_VERSION}-{processor}-py3" in default_image(region, instance), (name, region)


def test_a_region_without_the_image_is_a_clear_error():
    with pytest.raises(TrainfleetInputError, match="set sagemaker.image_uri"):
        default_image("mars-north-1", load_catalog().get("c5.xlarge"))


def _images(env, spec) -> dict[str, str]:
    """instance type -> TrainingImage of the job each run launched (moto), checked against launch.json."""
    sm, s3, bucket = boto3.client("sagemaker", region_name="us-east-1"), env.client("s3"), env.infra.bucket
    images = {}
    for entry in runner.launch(env, spec).launched:
        job = sm.describe_training_job(TrainingJobName=entry["job_name"])
        image = job["AlgorithmSpecification"]["TrainingImage"]
        [attempt] = read_json(run_location(s3, bucket, spec.campaign, entry["run_id"]), "launch.json")["attempts"]
        assert attempt["image"] == image
        images[entry["instance_type"]] = image
    return images


def test_each_run_gets_the_image_for_its_own_instance_type(sm_env):
    spec = parse_spec(sm_spec(matrix={"instance_type": ["c5.xlarge", "g5.xlarge"], "batch_size": [3]}, budget_usd=20.0))
    images = _images(sm_env, spec)
    assert images["g5.xlarge"].endswith(":2.10.0-gpu-py313") and images["c5.xlarge"].endswith(":2.10.0-cpu-py313")


def test_the_campaigns_image_uri_wins_for_every_run(sm_env):
    mine = "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-training:7"
    spec = parse_spec(sm_spec(sagemaker={"max_wait_minutes": 60, "image_uri": mine}, budget_usd=20.0,
                              matrix={"instance_type": ["c5.xlarge", "g5.xlarge"], "batch_size": [3]}))
    assert _images(sm_env, spec) == {"c5.xlarge": mine, "g5.xlarge": mine}
