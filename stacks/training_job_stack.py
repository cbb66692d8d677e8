from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from instance_benchmarks.core.contract import launch_template_version_parameter

from stacks.config import JobConfig
from stacks.constructs.spot_training_job import SpotTrainingJob
from stacks.constructs.training_compute import TrainingCompute
from stacks.constructs.training_network import instance_subnets


class TrainingJobStack(Stack):
    """One-shot job: one instance clones the repo, runs the script, uploads to s3://bucket/jobs/<id>/, terminates.
    Its stack is `TrainingJob-<id>` (app_stacks), so jobs with different ids run side by side.

    It boots from the Compute stack's launch template for its type's image kind (catalog) and market."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        job: JobConfig,
        compute: TrainingCompute,
        vpc: ec2.IVpc,
        bucket: s3.IBucket,
        ssm_prefix: str,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        instance = job.instance_spec  # refused types raise TrainfleetInputError (config refused them first)
        image = compute.images[instance.image]
        # the stack's region (a deploy-time token), where the bucket is
        bootstrap = job.bootstrap(bucket=bucket.bucket_name, region=self.region, python=image.python)
        training_job = SpotTrainingJob(
            self,
            "Job",
            job_id=job.job_id,
            instance_type=job.instance_type,
            bootstrap=bootstrap,
            launch_template=compute.template_for(job.market, instance.image),
            # the template's latest version as the Compute stack last wrote it to SSM
            launch_template_version=ssm.StringParameter.value_for_string_parameter(
                self, launch_template_version_parameter(ssm_prefix, instance.image, job.market)),
            machine_image=compute.machine_images[instance.image],
            burstable=instance.burstable,
            subnet=instance_subnets(vpc)[0],
        )
        CfnOutput(self, "JobId", value=job.job_id)
        CfnOutput(self, "InstanceId", value=training_job.instance.ref)
        # The bucket name is the Storage stack's BucketName output: s3://<BucketName>/<OutputPrefix>
        CfnOutput(self, "OutputPrefix", value=training_job.output_prefix)
