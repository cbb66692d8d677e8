from __future__ import annotations

import boto3
import pytest

from instance_benchmarks.campaigns.spec import parse_spec
from instance_benchmarks.embedded.deploy import deploy, synthesize
from instance_benchmarks.backends.ec2.instances import resolve_infrastructure
from instance_benchmarks.embedded.cloud import LOCAL_AMI_PARAMETER, register_local_ami
from stacks.config import AppConfig

REGION = "us-east-1"


@pytest.fixture(scope="session")
def templates():
    return synthesize(AppConfig(ami_parameter=LOCAL_AMI_PARAMETER))


@pytest.fixture
def cfn(aws):
    return boto3.client("cloudformation", region_name=REGION)


@pytest.fixture
def infra(aws, templates, ec2, ssm, cfn):
    """The real Storage/Network/Compute templates deployed into in-process moto."""
    register_local_ami(ec2, ssm)
    deploy(cfn, templates)
    return resolve_infrastructure(ssm)


def spec_dict(**changes) -> dict:
    base = {
        "campaign": "sweep", "workload": "cartpole_pg", "repo": "https://github.com/acme/trainfleet.git",
        "ref": "main", "region": REGION, "market": "spot", "max_runtime_minutes": 30, "budget_usd": 10.0,
        "hyperparameters": {"epochs": 3}, "matrix": {"instance_type": ["c5.xlarge"], "batch_size": [3, 5, 7, 10, 12, 15]},
        "target": {"metric": "final10_reward", "value": 195},
    }
    base.update(changes)
    return base


@pytest.fixture
def spec():
    return parse_spec(spec_dict())
