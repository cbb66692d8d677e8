"""Wires the trainfleet stacks into an app from one AppConfig."""
from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from instance_benchmarks.core.bootstrap import job_stack_name
from instance_benchmarks.core.contract import TRAINFLEET_VERSION, VERSION_OUTPUT
from stacks.compute_stack import ComputeStack
from stacks.config import AppConfig
from stacks.network_stack import NetworkStack
from stacks.storage_stack import StorageStack
from stacks.training_job_stack import TrainingJobStack


@dataclass(frozen=True)
class TrainfleetStacks:
    storage: StorageStack
    network: NetworkStack
    compute: ComputeStack
    training_job: TrainingJobStack | None


def build_stacks(app: cdk.App, config: AppConfig, *, nag: bool = True) -> TrainfleetStacks:
    # `cdk deploy` publishes each template as a file asset to the CDK bootstrap bucket and deploys with the
    # bootstrap roles, so an account needs `npx cdk bootstrap` once (README, tests/stacks/test_bootstrap.py).
    # No bootstrap-version rule: it reads /cdk-bootstrap/*/version from SSM, which the embedded default's
    # moto has not; instance_benchmarks/embedded/deploy.py deploys the same templates without the CLI.
    synthesizer = lambda: cdk.DefaultStackSynthesizer(generate_bootstrap_version_rule=False)  # noqa: E731
    storage = StorageStack(
        app,
        "Storage",
        noncurrent_version_days=config.checkpoint_version_retention_days,
        termination_protection=config.termination_protection,
        description="trainfleet: artifact bucket (stateful, retained)",
        synthesizer=synthesizer(),
    )
    network = NetworkStack(
        app, "Network", max_azs=config.max_azs, private_subnets=config.private_subnets,
        restrict_default_security_group=config.restrict_default_security_group,
        description="trainfleet: VPC with private subnets and a NAT gateway" if config.private_subnets
        else "trainfleet: public-subnet VPC, no NAT", synthesizer=synthesizer(),
    )
    compute = ComputeStack(
        app,
        "Compute",
        vpc=network.vpc,
        bucket=storage.bucket,
        images=config.images,
        ssm_prefix=config.ssm_prefix,
        description="trainfleet: instance role, security group, launch templates, launcher policy",
        synthesizer=synthesizer(),
    )
    for stack in (storage, network, compute):  # read by `trainfleet doctor`: built from this trainfleet?
        cdk.CfnOutput(stack, VERSION_OUTPUT, value=TRAINFLEET_VERSION, description="trainfleet version of the stack")
    training_job = None
    if config.job is not None:
        training_job = TrainingJobStack(
            app,
            job_stack_name(config.job.job_id),  # TrainingJob-<job-id>: one stack per job, several at once
            job=config.job,
            compute=compute.compute,
            vpc=network.vpc,
            bucket=storage.bucket,
            ssm_prefix=config.ssm_prefix,
            description=f"trainfleet: one-shot training job {config.job.job_id}",
            synthesizer=synthesizer(),
        )
    if nag:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return TrainfleetStacks(storage, network, compute, training_job)
