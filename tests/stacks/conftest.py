from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from stacks.app_stacks import build_stacks
from stacks.config import AppConfig, JobConfig

JOB = JobConfig(
    job_id="job-test",
    instance_type="p3.2xlarge",
    repo="https://github.com/acme/train.git",
    ref="v1.2",
    script="training_scripts/tabular_mlp.py",
    script_args=("--epochs=3",),
    max_runtime_minutes=90,
    spot=True,
)


@pytest.fixture(scope="session")
def app_stacks():
    app = cdk.App()
    stacks = build_stacks(app, AppConfig(ami_parameter="/custom/ami", job=JOB))
    app.synth()  # runs cdk-nag: raises on any unacknowledged finding
    return stacks


@pytest.fixture(scope="session")
def templates(app_stacks):
    return {
        "storage": Template.from_stack(app_stacks.storage),
        "network": Template.from_stack(app_stacks.network),
        "compute": Template.from_stack(app_stacks.compute),
        "job": Template.from_stack(app_stacks.training_job),
    }
