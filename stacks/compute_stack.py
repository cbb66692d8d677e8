from __future__ import annotations

from typing import Mapping

from aws_cdk import CfnOutput, Fn, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from instance_benchmarks.core.contract import MARKETS, SSM_EXPORTS, launch_template_version_parameter
from stacks.config import ImageConfig
from stacks.constructs.launcher_policy import LauncherPolicy
from stacks.constructs.training_compute import TrainingCompute, template_name
from stacks.constructs.training_network import instance_subnets


# Infrastructure field -> construct id of its SSM parameter. Kept as they were: a parameter whose logical id
# changes is created anew before the old one is deleted, and its fixed name would then clash.
EXPORT_IDS = {
    "bucket": "BucketName",
    "launch_templates": "LaunchTemplates",
    "subnet_ids": "SubnetIds",
    "security_group_id": "SecurityGroupId",
    "instance_profile_arn": "InstanceProfileArn",
}


def launch_template_output(kind: str, market: str) -> str:
    """CloudFormation output key of one launch template's id, e.g. GpuSpotLaunchTemplateId."""
    return f"{template_name(kind, market)}LaunchTemplateId"


class ComputeStack(Stack):
    """Stateless: role, security group, launch templates, the launcher's policy; exports what a launcher needs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        bucket: s3.IBucket,
        images: Mapping[str, ImageConfig],
        ssm_prefix: str,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.compute = TrainingCompute(self, "Compute", vpc=vpc, bucket=bucket, images=images, ssm_prefix=ssm_prefix)
        self.launcher = LauncherPolicy(self, "Launcher", compute=self.compute, bucket=bucket,
                                       subnets=instance_subnets(vpc), ssm_prefix=ssm_prefix)
        # {"gpu": {"spot": "lt-...", "on-demand": "lt-...", "root_volume_gib": 100}, "cpu": {...}}, built by
        # CloudFormation from the template ids (see backends/infrastructure.py for the reader).
        launch_templates = {
            kind: {
                **{market: self.compute.template_for(market, kind).launch_template_id for market in MARKETS},
                "root_volume_gib": image.root_volume_gib,
            }
            for kind, image in self.compute.images.items()
        }
        exports = {  # Infrastructure field -> value (SSM names live in core.contract)
            "bucket": bucket.bucket_name,
            "launch_templates": self.to_json_string(launch_templates),
            "subnet_ids": Fn.join(",", [s.subnet_id for s in instance_subnets(vpc)]),
            "security_group_id": self.compute.security_group.security_group_id,
            "instance_profile_arn": self.compute.instance_profile.instance_profile_arn,
        }
        for field, value in exports.items():
            ssm.StringParameter(self, f"{EXPORT_IDS[field]}Parameter",
                                parameter_name=f"{ssm_prefix}/{SSM_EXPORTS[field]}", string_value=value)
        # Each template's latest version for job stacks, through SSM (resolved when a job stack deploys): as an
        # export it would block every Compute deploy that changes an AMI while a TrainingJob stack exists.
        for (kind, market), template in self.compute.templates.items():
            ssm.StringParameter(self, f"{template_name(kind, market)}VersionParameter",
                                parameter_name=launch_template_version_parameter(ssm_prefix, kind, market),
                                string_value=template.latest_version_number)
        # Outputs (the bucket name and subnet ids are the storage / network stacks' outputs).
        for (kind, market), template in self.compute.templates.items():
            CfnOutput(self, launch_template_output(kind, market), value=template.launch_template_id)
        CfnOutput(self, "SecurityGroupId", value=exports["security_group_id"])
        CfnOutput(self, "InstanceProfileArn", value=exports["instance_profile_arn"])
        CfnOutput(self, "LauncherPolicyArn", value=self.launcher.policy.managed_policy_arn,
                  description="attach to the IAM user or role that runs `trainfleet campaign ...`")
