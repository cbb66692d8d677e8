"""End to end: moto's server on 127.0.0.1, the synthesized templates deployed with CloudFormation."""
from __future__ import annotations

import base64

import pytest

from instance_benchmarks.embedded.deploy import synthesize
from instance_benchmarks.embedded.cloud import LOCAL_AMI_PARAMETER, start_local_cloud
from stacks.config import AppConfig, JobConfig

JOB = JobConfig(job_id="e2e-job", instance_type="c5.xlarge", repo="https://github.com/acme/train.git",
                ref="main", script="train.py", script_args=(), max_runtime_minutes=30, spot=True)


@pytest.fixture(scope="module")
def cloud():
    cloud = start_local_cloud(AppConfig(job=JOB))
    yield cloud
    cloud.server.stop()


def test_synthesize_orders_dependencies_first():
    names = [s.name for s in synthesize(AppConfig(ami_parameter=LOCAL_AMI_PARAMETER, job=JOB))]
    assert names.index("Storage") < names.index("Compute") < names.index("TrainingJob")
    assert names.index("Network") < names.index("Compute")


def test_bucket_exists_with_encryption(cloud):
    # moto's CloudFormation applies BucketEncryption but not VersioningConfiguration; versioning and
    # lifecycle are asserted on the template in tests/stacks/test_storage_stack.py.
    s3 = cloud.client("s3")
    bucket = cloud.outputs["Storage"]["BucketName"]
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_launch_templates_exist_as_declared(cloud):
    ec2 = cloud.client("ec2")
    spot_id = cloud.outputs["Compute"]["SpotLaunchTemplateId"]
    data = ec2.describe_launch_template_versions(LaunchTemplateId=spot_id)["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert data["InstanceMarketOptions"]["MarketType"] == "spot"
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert data["IamInstanceProfile"]["Arn"] == cloud.outputs["Compute"]["InstanceProfileArn"]
    assert data["SecurityGroupIds"] == [cloud.outputs["Compute"]["SecurityGroupId"]]


def test_ssm_exports_match_outputs(cloud):
    ssm = cloud.client("ssm")
    params = {p["Name"]: p["Value"] for p in ssm.get_parameters_by_path(Path="/trainfleet", Recursive=True)["Parameters"]}
    assert params["/trainfleet/bucket-name"] == cloud.outputs["Storage"]["BucketName"]
    assert params["/trainfleet/subnet-ids"] == cloud.outputs["Network"]["SubnetIds"]
    assert params["/trainfleet/launch-template/on-demand-id"] == cloud.outputs["Compute"]["OnDemandLaunchTemplateId"]


def test_training_job_instance_runs_with_generated_user_data(cloud):
    ec2 = cloud.client("ec2")
    instance_id = cloud.outputs["TrainingJob"]["InstanceId"]
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert instance["InstanceType"] == "c5.xlarge"
    assert {"Key": "trainfleet:job", "Value": "e2e-job"} in instance["Tags"]
    user_data = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
    script = base64.b64decode(user_data).decode()
    assert f"s3://{cloud.outputs['Storage']['BucketName']}/jobs/e2e-job" in script
