from __future__ import annotations

from aws_cdk import CfnOutput, Fn, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from instance_benchmarks.core.contract import SSM_EXPORTS
from stacks.constructs.training_compute import TrainingCompute

# CloudFormation output key -> the launcher's Infrastructure field (SSM names live in core.contract).
EXPORTS = {
    "BucketName": "bucket",
    "SpotLaunchTemplateId": "spot_template_id",
    "OnDemandLaunchTemplateId": "on_demand_template_id",
    "SubnetIds": "subnet_ids",
    "SecurityGroupId": "security_group_id",
    "InstanceProfileArn": "instance_profile_arn",
}


class ComputeStack(Stack):
    """Stateless: role, security group, launch templates; exports what a launcher needs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        bucket: s3.IBucket,
        ami_parameter: str,
        root_device_name: str,
        root_volume_gib: int,
        ssm_prefix: str,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.compute = TrainingCompute(
            self,
            "Compute",
            vpc=vpc,
            bucket=bucket,
            ami_parameter=ami_parameter,
            root_device_name=root_device_name,
            root_volume_gib=root_volume_gib,
        )
        values = {
            "BucketName": bucket.bucket_name,
            "SpotLaunchTemplateId": self.compute.spot_template.launch_template_id,
            "OnDemandLaunchTemplateId": self.compute.on_demand_template.launch_template_id,
            "SubnetIds": Fn.join(",", [s.subnet_id for s in vpc.public_subnets]),
            "SecurityGroupId": self.compute.security_group.security_group_id,
            "InstanceProfileArn": self.compute.instance_profile.instance_profile_arn,
        }
        for key, value in values.items():
            if key not in ("BucketName", "SubnetIds"):  # those are the storage / network stacks' outputs
                CfnOutput(self, key, value=value)
            ssm.StringParameter(self, f"{key}Parameter", parameter_name=f"{ssm_prefix}/{SSM_EXPORTS[EXPORTS[key]]}", string_value=value)
