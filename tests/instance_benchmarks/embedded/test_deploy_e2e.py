"""End to end: moto's server on 127.0.0.1, the synthesized templates deployed with CloudFormation."""
from __future__ import annotations

import base64
import json

import pytest

from instance_benchmarks.backends.infrastructure import resolve_infrastructure
from instance_benchmarks.embedded.cloud import LOCAL_AMI_PARAMETER, local_config, start_local_cloud
from instance_benchmarks.embedded.deploy import TEMPLATE_BODY_LIMIT, synthesize
from stacks.config import AppConfig, JobConfig

JOB = JobConfig(job_id="e2e-job", instance_type="c5.xlarge", repo="https://github.com/acme/train.git",
                ref="main", script="train.py", script_args=(), max_runtime_minutes=30, spot=True)


@pytest.fixture(scope="module")
def cloud():
    cloud = start_local_cloud(AppConfig(job=JOB))
    yield cloud
    cloud.server.stop()


def test_synthesize_orders_dependencies_first_and_fits_the_template_body_limit():
    stacks = synthesize(local_config(AppConfig(job=JOB)))
    names = [s.name for s in stacks]
    assert names.index("Storage") < names.index("Compute") < names.index("TrainingJob-e2e-job")
    assert names.index("Network") < names.index("Compute")
    assert all(len(json.dumps(s.template)) < TEMPLATE_BODY_LIMIT for s in stacks)


def test_local_config_points_every_image_at_the_local_ami():
    config = local_config(AppConfig(job=JOB))
    assert {kind: image.ami_parameter for kind, image in config.images.items()} == {
        "gpu": LOCAL_AMI_PARAMETER, "cpu": LOCAL_AMI_PARAMETER}
    assert config.images["cpu"].root_volume_gib == 30 and config.job == JOB


def test_bucket_exists_with_encryption(cloud):
    # moto's CloudFormation applies BucketEncryption but not VersioningConfiguration; versioning and
    # lifecycle are asserted on the template in tests/stacks/test_storage_stack.py.
    s3 = cloud.client("s3")
    bucket = cloud.outputs["Storage"]["BucketName"]
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


@pytest.mark.parametrize("kind, market, root_gib", [
    ("Gpu", "Spot", 100), ("Gpu", "OnDemand", 100), ("Cpu", "Spot", 30), ("Cpu", "OnDemand", 30)])
def test_launch_templates_exist_as_declared(cloud, kind, market, root_gib):
    ec2 = cloud.client("ec2")
    template_id = cloud.outputs["Compute"][f"{kind}{market}LaunchTemplateId"]
    data = ec2.describe_launch_template_versions(LaunchTemplateId=template_id)["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert ("InstanceMarketOptions" in data) == (market == "Spot")
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert data["IamInstanceProfile"]["Arn"] == cloud.outputs["Compute"]["InstanceProfileArn"]
    assert data["SecurityGroupIds"] == [cloud.outputs["Compute"]["SecurityGroupId"]]
    assert data["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == root_gib


def test_ssm_exports_match_outputs(cloud):
    ssm = cloud.client("ssm")
    params = {p["Name"]: p["Value"] for p in ssm.get_parameters_by_path(Path="/trainfleet", Recursive=True)["Parameters"]}
    assert params["/trainfleet/bucket-name"] == cloud.outputs["Storage"]["BucketName"]
    assert params["/trainfleet/subnet-ids"] == cloud.outputs["Network"]["SubnetIds"]
    outputs = cloud.outputs["Compute"]
    assert json.loads(params["/trainfleet/launch-templates"]) == {
        kind.lower(): {"spot": outputs[f"{kind}SpotLaunchTemplateId"], "on-demand": outputs[f"{kind}OnDemandLaunchTemplateId"],
                       "root_volume_gib": size}
        for kind, size in (("Gpu", 100), ("Cpu", 30))}


def test_launcher_reads_the_templates_per_image_and_market(cloud):
    infra = resolve_infrastructure(cloud.client("ssm"))
    outputs = cloud.outputs["Compute"]
    assert infra.template_for("spot", "cpu") == outputs["CpuSpotLaunchTemplateId"]
    assert infra.template_for("on-demand", "gpu") == outputs["GpuOnDemandLaunchTemplateId"]
    assert (infra.root_volume_gib("gpu"), infra.root_volume_gib("cpu")) == (100, 30)


def test_launcher_policy_is_created(cloud):
    arn = cloud.outputs["Compute"]["LauncherPolicyArn"]
    assert arn.endswith(":policy/trainfleet-launcher-us-east-1")
    version = cloud.client("iam").get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = cloud.client("iam").get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    document = json.loads(document) if isinstance(document, str) else document
    assert "ec2:RunInstances" in json.dumps(document) and "DeleteObjectVersion" not in json.dumps(document)


def test_training_job_instance_runs_with_generated_user_data(cloud):
    ec2 = cloud.client("ec2")
    instance_id = cloud.outputs["TrainingJob-e2e-job"]["InstanceId"]
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert instance["InstanceType"] == "c5.xlarge"
    assert {"Key": "trainfleet:job", "Value": "e2e-job"} in instance["Tags"]
    user_data = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
    script = base64.b64decode(user_data).decode()
    # the region and bucket tokens resolved at deploy: outputs go to s3://<bucket>/jobs/e2e-job/ (boto3)
    assert f"'us-east-1' '{cloud.outputs['Storage']['BucketName']}' jobs/e2e-job \"$TRAINFLEET_ROOT/out\"" in script
