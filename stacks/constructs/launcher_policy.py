"""The managed policy for whoever launches campaigns from their machine (`trainfleet campaign ...`, `models ...`).

Derived from the launcher's boto3 calls on the EC2 backend:

* ssm get_parameters (backends/infrastructure.py): the Compute stack's exports under /trainfleet/.
* s3 head_bucket, list_objects_v2 (campaigns/store.py), get_object / head_object / download_file
  (store.py, models.py), put_object (store.py, report.py, backends/packaging.py): campaigns/ only.
* ec2 run_instances from the stack's launch templates, tagging instance, volume and spot request at
  launch (backends/ec2/instances.py); describe_instances, describe_spot_instance_requests,
  describe_spot_price_history (catalog/pricing.py), describe_subnets (the subnets' AZs, backends/ec2/backend.py);
  terminate_instances, cancel_spot_instance_requests (teardown, by tag); iam:PassRole for the launch
  templates' instance profile.
* iam:CreateServiceLinkedRole for AWSServiceRoleForEC2Spot only: a spot RunInstances through the API needs
  that role (EC2 User Guide, "Service-linked role for Spot Instance requests"); in an account that has
  none yet, EC2 creates it with the caller's permission or refuses the launch
  (AuthFailure.ServiceLinkedRoleCreationNotPermitted).

The SageMaker backend needs more (see README, "Deploying to AWS"); it is not granted here.
"""
from __future__ import annotations

from typing import Sequence

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from instance_benchmarks.core.contract import CAMPAIGN_TAG, LAUNCHER_ACTIONS, SPOT_SERVICE, SPOT_SERVICE_LINKED_ROLE
from stacks.constructs.nag import exports_arn, exports_finding, imported_bucket_arn
from stacks.constructs.training_compute import TrainingCompute

LAUNCHED = ("instance", "volume", "spot-instances-request")  # what run_instances creates and tags


class LauncherPolicy(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        compute: TrainingCompute,
        bucket: s3.IBucket,
        subnets: Sequence[ec2.ISubnet],
        ssm_prefix: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        def ec2_arn(resource: str, name: str, account: str | None = None) -> str:
            return stack.format_arn(service="ec2", resource=resource, resource_name=name, account=account)

        templates = [ec2_arn("launch-template", t.launch_template_id) for t in compute.templates.values()]
        # The AMIs the templates boot (AWS- or Canonical-owned: image ARNs carry no account), as resolved
        # from their SSM parameters at deploy, the same values the launch templates hold.
        images = [ec2_arn("image", image.get_image(self).image_id, account="")
                  for image in compute.machine_images.values()]
        launch_resources = [
            *templates,
            *images,
            *(ec2_arn("subnet", subnet.subnet_id) for subnet in subnets),
            ec2_arn("security-group", compute.security_group.security_group_id),
            ec2_arn("network-interface", "*"),
            ec2_arn("volume", "*"),
            ec2_arn("spot-instances-request", "*"),
        ]
        campaign_tagged = [ec2_arn(resource, "*") for resource in ("instance", "spot-instances-request")]
        parameters = exports_arn(self, ssm_prefix)
        # Hand-written statements: a managed policy is no grantee (bucket.grant_* and role.grant_pass_role
        # need an IGrantable; the launching user lives outside this app), and the S3 grants would add
        # s3:DeleteObject*, which includes DeleteObjectVersion.
        def statement(sid: str, **kwargs) -> iam.PolicyStatement:  # the actions of `sid`, from core.contract
            return iam.PolicyStatement(sid=sid, actions=list(LAUNCHER_ACTIONS[sid]), **kwargs)

        statements = [
            statement("RunFromTrainfleetTemplates", resources=launch_resources),
            statement("RunCampaignTaggedInstances", resources=[ec2_arn("instance", "*")],
                      conditions={"Null": {f"aws:RequestTag/{CAMPAIGN_TAG}": "false"}}),
            statement("TagOnlyAtLaunch", resources=[ec2_arn(resource, "*") for resource in LAUNCHED],
                      conditions={"StringEquals": {"ec2:CreateAction": "RunInstances"}}),
            statement("EndCampaignTaggedOnly", resources=campaign_tagged,
                      conditions={"Null": {f"aws:ResourceTag/{CAMPAIGN_TAG}": "false"}}),
            statement("DescribeInstancesAndSpot", resources=["*"]),
            statement("CreateSpotServiceLinkedRole",
                      resources=[stack.format_arn(service="iam", region="", resource="role",
                                                  resource_name=SPOT_SERVICE_LINKED_ROLE)],
                      conditions={"StringLike": {"iam:AWSServiceName": SPOT_SERVICE}}),
            statement("PassInstanceRoleToEc2", resources=[compute.role.role_arn],
                      conditions={"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}),
            # no s3:prefix condition: head_bucket (backends/infrastructure.py) is authorized as a prefix-less ListBucket
            statement("ListArtifactBucket", resources=[bucket.bucket_arn]),
            statement("ReadWriteCampaigns", resources=[bucket.arn_for_objects("campaigns/*")]),
            statement("ReadExports", resources=[parameters]),
        ]
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            # IAM names are global to the account: one policy per region the stacks are deployed to.
            managed_policy_name=f"trainfleet-launcher-{stack.region}",
            description="trainfleet launcher: run/end campaign instances from the trainfleet launch templates, "
            "campaigns/ in the artifact bucket, the /trainfleet exports",
            statements=statements,
        )
        ec2_finding = "Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:{}/*"
        reasons = {
            ec2_finding.format("instance"): "Instance ids are unknown before launch: RunInstances requires the "
            f"{CAMPAIGN_TAG} request tag, TerminateInstances requires that resource tag, CreateTags only at launch.",
            ec2_finding.format("spot-instances-request"): "Spot requests are created by RunInstances from the spot "
            f"templates; they can be cancelled only when they carry the {CAMPAIGN_TAG} tag.",
            ec2_finding.format("volume"): "The root volume RunInstances creates from the launch template's block "
            "device mapping (id unknown before launch); tagged only at launch (ec2:CreateAction).",
            ec2_finding.format("network-interface"): "The primary network interface RunInstances creates in the "
            "stack's subnets with its security group (both named explicitly); its id is unknown before launch.",
            "Resource::*": "Only ec2:DescribeInstances, DescribeSpotInstanceRequests, DescribeSpotPriceHistory and "
            "DescribeSubnets: EC2 Describe actions support no resource-level permissions.",
            exports_finding(ssm_prefix):
            "Read-only (GetParameter/GetParameters) on the stack's own /trainfleet/ exports, nothing else.",
            f"Resource::{imported_bucket_arn(bucket)}/campaigns/*": "Get/PutObject under campaigns/ of the one "
            "artifact bucket (campaign specs, agent wheel, run records, reports); no delete at all.",
        }
        for finding, reason in reasons.items():
            Validations.of(self.policy).acknowledge(Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=reason))
