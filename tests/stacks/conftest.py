from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from stacks.app_stacks import build_stacks
from stacks.config import AppConfig, ImageConfig, JobConfig

JOB = JobConfig(
    job_id="job-test",
    instance_type="g5.xlarge",
    repo="https://github.com/acme/train.git",
    ref="v1.2",
    script="training_scripts/tabular_mlp.py",
    script_args=("--epochs=3",),
    max_runtime_minutes=90,
    spot=True,
)


IMAGES = {
    "gpu": ImageConfig("/custom/gpu/ami", "/dev/sda1", 100, "/opt/pytorch/bin/python"),
    "cpu": ImageConfig("/custom/cpu/ami", "/dev/sda1", 30, "python3"),
}


def build(job: JobConfig | None = JOB, images=IMAGES):
    """Synthesized stacks (runs cdk-nag: raises on any unacknowledged finding)."""
    app = cdk.App()
    stacks = build_stacks(app, AppConfig(images=images, job=job))
    app.synth()
    return stacks


@pytest.fixture(scope="session")
def app_stacks():
    return build()


@pytest.fixture(scope="session")
def templates(app_stacks):
    return {
        "storage": Template.from_stack(app_stacks.storage),
        "network": Template.from_stack(app_stacks.network),
        "compute": Template.from_stack(app_stacks.compute),
        "job": Template.from_stack(app_stacks.training_job),
    }
