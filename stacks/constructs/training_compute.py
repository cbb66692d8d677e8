"""Instance role, security group and one spot and one on-demand launch template per machine image kind."""
from __future__ import annotations

from typing import Mapping

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from instance_benchmarks.core.contract import MARKETS
from stacks.config import ImageConfig
from stacks.constructs.nag import checkov_skip, exports_arn, exports_finding, imported_bucket_arn

# What training instances may list: campaign runs and one-shot jobs (names only).
INSTANCE_PREFIXES = ("campaigns", "jobs")
# What they read and write (keys below the bucket). A run's instance writes its run's folder (launch.json,
# checkpoints, train/, logs/, result.json) and reads its task and checkpoints there; it reads the agent wheel
# but never writes it, nor campaign.json or report/ (what the launcher writes and trusts); a job's instance
# writes jobs/. Only checkpoints/ (kept equal to the instance's folder) and jobs/ are ever deleted.
INSTANCE_READ_WRITE = ("campaigns/*/runs/*", "jobs/*")
INSTANCE_READ_ONLY = ("campaigns/*/agent/*",)
INSTANCE_DELETE = ("campaigns/*/runs/*/checkpoints/*", "jobs/*")
# What SSM Agent needs for Session Manager shells (AWS's minimal instance policy for Session Manager).
SESSION_MANAGER_ACTIONS = [
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
]


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))


def template_name(kind: str, market: str) -> str:
    """One launch template's name in construct ids and outputs, e.g. GpuSpot, CpuOnDemand."""
    return f"{_pascal(kind)}{_pascal(market)}"


class TrainingCompute(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        bucket: s3.IBucket,
        images: Mapping[str, ImageConfig],
        ssm_prefix: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.images = dict(images)
        self.role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="trainfleet training instances: campaigns/ and jobs/ in the artifact bucket, SSM Session Manager",
        )
        self._grant_instance_permissions(bucket, ssm_prefix)
        self.instance_profile = iam.InstanceProfile(self, "InstanceProfile", role=self.role)
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="trainfleet training instances: no inbound; access through SSM Session Manager",
            allow_all_outbound=True,
        )
        self.machine_images = {
            kind: ec2.MachineImage.from_ssm_parameter(image.ami_parameter) for kind, image in self.images.items()
        }
        # (image kind, market) -> launch template
        self.templates = {
            (kind, market): self._template(kind, image, market)
            for kind, image in self.images.items()
            for market in MARKETS
        }

    def template_for(self, market: str, image: str) -> ec2.LaunchTemplate:
        return self.templates[(image, market)]

    def _grant_instance_permissions(self, bucket: s3.IBucket, ssm_prefix: str) -> None:
        # Not bucket.grant_read/grant_put/grant_delete: grant_read adds s3:GetBucket* and s3:List* on the
        # whole bucket (no prefix condition), grant_put adds s3:Abort* and the object-lock/tagging actions,
        # and grant_delete grants s3:DeleteObject*, which includes s3:DeleteObjectVersion (erasing the
        # versioned history). iam.Grant with the exact actions gives what the agent and job scripts use.
        def objects(patterns) -> list[str]:
            return [bucket.arn_for_objects(pattern) for pattern in patterns]

        iam.Grant.add_to_principal(grantee=self.role, actions=["s3:GetObject"],
                                   resource_arns=objects(INSTANCE_READ_WRITE + INSTANCE_READ_ONLY))
        iam.Grant.add_to_principal(grantee=self.role, actions=["s3:PutObject"], resource_arns=objects(INSTANCE_READ_WRITE))
        iam.Grant.add_to_principal(grantee=self.role, actions=["s3:DeleteObject"], resource_arns=objects(INSTANCE_DELETE))
        iam.Grant.add_to_principal(
            grantee=self.role, actions=["s3:ListBucket"], resource_arns=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}/*" for prefix in INSTANCE_PREFIXES]}})
        iam.Grant.add_to_principal(grantee=self.role, actions=["ssm:GetParameter", "ssm:GetParameters"],
                                   resource_arns=[exports_arn(self, ssm_prefix)])
        # Instead of the AWS managed AmazonSSMManagedInstanceCore (which reads every parameter in the account).
        iam.Grant.add_to_principal(grantee=self.role, actions=SESSION_MANAGER_ACTIONS, resource_arns=["*"])

        reasons = {
            "Resource::*": "Session Manager's channel actions (ssmmessages:*Channel) define no resource types and "
            "ssm:UpdateInstanceInformation is the agent's own registration; AWS's minimal Session Manager "
            "instance policy grants these five actions on '*'. No other action has Resource '*'.",
            exports_finding(ssm_prefix):
            "Read-only (GetParameter/GetParameters) on the stack's own /trainfleet/ parameters: the "
            "deployment's exports, nothing else in the account.",
        }
        for pattern in {*INSTANCE_READ_WRITE, *INSTANCE_READ_ONLY, *INSTANCE_DELETE}:
            reasons[f"Resource::{imported_bucket_arn(bucket)}/{pattern}"] = (
                f"Get, Put or DeleteObject (never DeleteObjectVersion) on {pattern} of the one artifact bucket: "
                "the run and job folders instances write, the agent wheel they read; keys are per run, unknown "
                "at deploy.")
        for finding, reason in reasons.items():
            Validations.of(self.role).acknowledge(Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=reason))
        checkov_skip(self.role.node.find_child("DefaultPolicy").node.default_child, {
            "CKV_AWS_111": "the write actions on '*' are Session Manager's (ssm:UpdateInstanceInformation, "
                           "ssmmessages:*Channel), which define no resource types; S3 writes are limited to "
                           "campaigns/*/runs/ and jobs/ of the one bucket"})

    def _template(self, kind: str, image: ImageConfig, market: str) -> ec2.LaunchTemplate:
        return ec2.LaunchTemplate(
            self,
            f"{template_name(kind, market)}Template",
            machine_image=self.machine_images[kind],
            instance_profile=self.instance_profile,
            security_group=self.security_group,
            require_imdsv2=True,
            http_put_response_hop_limit=2,
            instance_initiated_shutdown_behavior=ec2.InstanceInitiatedShutdownBehavior.TERMINATE,
            block_devices=[
                ec2.BlockDevice(
                    device_name=image.root_device_name,
                    volume=ec2.BlockDeviceVolume.ebs(
                        image.root_volume_gib, encrypted=True, delete_on_termination=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                    ),
                )
            ],
            spot_options=ec2.LaunchTemplateSpotOptions(
                request_type=ec2.SpotRequestType.ONE_TIME,
                interruption_behavior=ec2.SpotInstanceInterruption.TERMINATE,
            )
            if market == "spot"
            else None,
        )
