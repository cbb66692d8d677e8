import json

import pytest

from aws_cdk.assertions import Match

from instance_benchmarks.core.contract import SSM_EXPORTS as EXPORTS

INSTANCE_ROLE_ACTIONS = sorted([
    "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket",
    "ssm:GetParameter", "ssm:GetParameters",
    "ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel",
])
LAUNCHER_ACTIONS = sorted([
    "ec2:RunInstances", "ec2:CreateTags", "ec2:TerminateInstances", "ec2:CancelSpotInstanceRequests",
    "ec2:DescribeInstances", "ec2:DescribeSpotInstanceRequests", "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets",
    "iam:PassRole", "iam:CreateServiceLinkedRole",
    "s3:ListBucket", "s3:GetObject", "s3:PutObject",
    "ssm:GetParameter", "ssm:GetParameters",
])
# The only actions allowed on Resource "*": EC2 Describe* (no resource-level permissions) and Session Manager.
STAR_RESOURCE_ACTIONS = {
    "ec2:DescribeInstances", "ec2:DescribeSpotInstanceRequests", "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets",
    "ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel",
}
BUCKET_ARN = {"Fn::ImportValue": "Storage:ExportsOutputFnGetAttArtifactsBucket88671897Arn65502B7F"}


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _statements(resource: dict) -> list[dict]:
    properties = resource["Properties"]
    documents = [properties.get("PolicyDocument")] + [p["PolicyDocument"] for p in properties.get("Policies", [])]
    return [s for document in documents if document for s in document["Statement"]]


def _all_statements(templates) -> list[dict]:
    found = []
    for template in templates.values():
        for resource in template.to_json()["Resources"].values():
            if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::Role",
                                    "AWS::S3::BucketPolicy"):
                found += _statements(resource)
    return found


def _instance_role_statements(templates) -> list[dict]:
    policies = templates["compute"].find_resources("AWS::IAM::Policy")
    role_policies = [p for p in policies.values() if p["Properties"]["Roles"] == [{"Ref": _role_id(templates)}]]
    return [s for p in role_policies for s in _statements(p)]


def _role_id(templates) -> str:
    (role_id,) = templates["compute"].find_resources("AWS::IAM::Role")
    return role_id


def _launcher(templates) -> dict:
    (policy,) = templates["compute"].find_resources("AWS::IAM::ManagedPolicy").values()
    return policy


def _launcher_statement(templates, sid: str) -> dict:
    return next(s for s in _statements(_launcher(templates)) if s.get("Sid") == sid)


def _actions(statements) -> list[str]:
    return sorted({a for s in statements for a in _listed(s["Action"])})


def _launch_templates(templates) -> dict:
    return templates["compute"].find_resources("AWS::EC2::LaunchTemplate")


def test_spot_template_one_time_terminate(templates):
    templates["compute"].has_resource_properties("AWS::EC2::LaunchTemplate", {"LaunchTemplateData": Match.object_like(
        {"InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": {
            "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}})})


def test_templates_require_imdsv2_encrypt_root_and_terminate_on_shutdown(templates):
    templates["compute"].resource_count_is("AWS::EC2::LaunchTemplate", 4)
    for resource in _launch_templates(templates).values():
        data = resource["Properties"]["LaunchTemplateData"]
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        assert data["InstanceInitiatedShutdownBehavior"] == "terminate"
        assert all(b["Ebs"]["Encrypted"] and b["Ebs"]["VolumeType"] == "gp3" for b in data["BlockDeviceMappings"])


def test_one_spot_and_one_on_demand_template_per_image_with_its_ami_and_root_size(templates):
    parameters = templates["compute"].to_json()["Parameters"]
    found = set()
    for resource in _launch_templates(templates).values():
        data = resource["Properties"]["LaunchTemplateData"]
        parameter = parameters[data["ImageId"]["Ref"]]
        assert parameter["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"  # resolved at deploy
        (root,) = data["BlockDeviceMappings"]
        market = data.get("InstanceMarketOptions", {}).get("MarketType", "on-demand")
        found.add((parameter["Default"], root["DeviceName"], root["Ebs"]["VolumeSize"], market))
    assert found == {
        ("/custom/gpu/ami", "/dev/sda1", 100, "spot"), ("/custom/gpu/ami", "/dev/sda1", 100, "on-demand"),
        ("/custom/cpu/ami", "/dev/sda1", 30, "spot"), ("/custom/cpu/ami", "/dev/sda1", 30, "on-demand"),
    }


def test_security_group_has_no_ingress(templates):
    groups = templates["compute"].find_resources("AWS::EC2::SecurityGroup")
    assert groups and all("SecurityGroupIngress" not in g["Properties"] for g in groups.values())
    templates["compute"].resource_count_is("AWS::EC2::SecurityGroupIngress", 0)


def test_instance_role_has_exactly_its_actions_and_no_managed_policy(templates):
    assert _actions(_instance_role_statements(templates)) == INSTANCE_ROLE_ACTIONS
    (role,) = templates["compute"].find_resources("AWS::IAM::Role").values()
    assert "ManagedPolicyArns" not in role["Properties"]  # no AmazonSSMManagedInstanceCore
    templates["compute"].resource_count_is("AWS::IAM::InstanceProfile", 1)


def _instance_s3_grants(templates) -> dict[str, set[str]]:
    """S3 object action -> the key patterns the instance role grants it on."""
    grants: dict[str, set[str]] = {}
    for statement in _instance_role_statements(templates):
        actions = _listed(statement["Action"])
        if not any(a.startswith("s3:") for a in actions) or actions == ["s3:ListBucket"]:
            continue
        patterns = {r["Fn::Join"][1][1].lstrip("/") for r in _listed(statement["Resource"])
                    if r["Fn::Join"][1][0] == BUCKET_ARN}
        assert len(patterns) == len(_listed(statement["Resource"]))  # the one bucket, nothing else
        for action in actions:
            grants.setdefault(action, set()).update(patterns)
    return grants


def test_instance_role_s3_is_runs_jobs_and_the_wheel_only(templates):
    """Instances write their runs' folders and jobs/; they read the agent wheel but never write it, nor
    campaign.json or report/; they delete only checkpoints (the mirror) and under jobs/."""
    assert _instance_s3_grants(templates) == {
        "s3:GetObject": {"campaigns/*/runs/*", "jobs/*", "campaigns/*/agent/*"},
        "s3:PutObject": {"campaigns/*/runs/*", "jobs/*"},
        "s3:DeleteObject": {"campaigns/*/runs/*/checkpoints/*", "jobs/*"},
    }
    for statement in _instance_role_statements(templates):
        if _listed(statement["Action"]) == ["s3:ListBucket"]:
            assert statement["Resource"] == BUCKET_ARN
            assert statement["Condition"] == {"StringLike": {"s3:prefix": ["campaigns/*", "jobs/*"]}}


def _as_user_policy(templates, bucket: str) -> dict:
    """The instance role's S3 object statements with the bucket's ARN filled in."""
    statements = [{"Effect": "Allow", "Action": [action], "Resource": [f"arn:aws:s3:::{bucket}/{p}" for p in sorted(patterns)]}
                  for action, patterns in _instance_s3_grants(templates).items()]
    return {"Version": "2012-10-17", "Statement": statements}


def _under_enforced_iam(policy: dict, calls) -> None:
    """`calls(client)` in moto with IAM enforced, as a principal whose only policy is `policy`; `client(service)`
    makes that principal's clients. The bucket IAM_BUCKET and the stack's exports exist."""
    import boto3
    from moto import mock_aws
    from moto.core import set_initial_no_auth_action_count

    from instance_benchmarks.core.contract import SSM_PREFIX

    @set_initial_no_auth_action_count(5)  # the setup's calls; every later one is checked against IAM
    @mock_aws
    def run() -> None:
        iam = boto3.client("iam", region_name="us-east-1")
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=IAM_BUCKET)
        boto3.client("ssm", region_name="us-east-1").put_parameter(Name=f"{SSM_PREFIX}/bucket", Value=IAM_BUCKET,
                                                                    Type="String")
        iam.create_user(UserName="principal")
        iam.put_user_policy(UserName="principal", PolicyName="under-test", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="principal")["AccessKey"]
        calls(lambda service: boto3.client(service, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
                                           aws_secret_access_key=key["SecretAccessKey"]))

    run()


IAM_BUCKET = "trainfleet-iam-check"


def _denied(call, **kwargs) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="AccessDenied|not authorized"):
        call(**kwargs)


def test_instance_role_enforced_by_moto_iam(templates):
    """The synthesized statements as an IAM principal's policy in moto with IAM enforced: each call the agent
    makes is allowed; writes to what the launcher writes and trusts are denied."""
    def calls(client) -> None:
        s3 = client("s3")
        for name in ("runs/r1/result.json", "runs/r1/checkpoints/latest.pt", "runs/r1/logs/attempt-1/script.log"):
            s3.put_object(Bucket=IAM_BUCKET, Key=f"campaigns/a/{name}", Body=b"x")
            assert s3.get_object(Bucket=IAM_BUCKET, Key=f"campaigns/a/{name}")["Body"].read() == b"x"
        s3.delete_object(Bucket=IAM_BUCKET, Key="campaigns/a/runs/r1/checkpoints/latest.pt")
        s3.put_object(Bucket=IAM_BUCKET, Key="jobs/j1/out.txt", Body=b"x")
        for denied in ("campaigns/a/agent/0123/trainfleet-0.1.0-py3-none-any.whl", "campaigns/a/campaign.json",
                       "campaigns/b/report/report.csv", "other/x", "campaigns/a/runs"):
            _denied(s3.put_object, Bucket=IAM_BUCKET, Key=denied, Body=b"planted")
        _denied(s3.delete_object, Bucket=IAM_BUCKET, Key="campaigns/a/runs/r1/result.json")

    _under_enforced_iam(_as_user_policy(templates, IAM_BUCKET), calls)


def _resolved(value):
    """A synthesized policy value with the bucket named IAM_BUCKET, the account's pseudo parameters filled in
    and any other reference (an import, an attribute) as '*'."""
    if isinstance(value, list):
        return [_resolved(v) for v in value]
    if not isinstance(value, dict):
        return value
    if value == BUCKET_ARN:
        return f"arn:aws:s3:::{IAM_BUCKET}"
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_resolved(p) for p in parts)
    if "Ref" in value:
        return {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}.get(value["Ref"], "*")
    return "*"


def test_launcher_policy_enforced_by_moto_iam(templates):
    """The launcher's managed policy in moto with IAM enforced: its S3 and EC2 reads and its campaign
    writes are allowed; deleting an object, writing outside campaigns/ and any IAM change are denied."""
    [policy] = [p for p in templates["compute"].find_resources("AWS::IAM::ManagedPolicy").values()
                if "trainfleet-launcher" in str(p["Properties"].get("ManagedPolicyName"))]
    document = policy["Properties"]["PolicyDocument"]
    statements = [{k: (_resolved(v) if k == "Resource" else v) for k, v in statement.items()}
                  for statement in document["Statement"]]

    def calls(client) -> None:
        s3, ssm, ec2, iam = client("s3"), client("ssm"), client("ec2"), client("iam")
        # moto checks SSM calls against Resource "*", not the parameter's ARN, and HeadBucket as its own action
        # (AWS: s3:ListBucket), so get_parameters and head_bucket are left to doctor's policy simulation
        s3.put_object(Bucket=IAM_BUCKET, Key="campaigns/a/campaign.json", Body=b"{}")
        s3.get_object(Bucket=IAM_BUCKET, Key="campaigns/a/campaign.json")
        s3.list_objects_v2(Bucket=IAM_BUCKET, Prefix="campaigns/a/")
        ec2.describe_instances()
        ec2.describe_spot_price_history(InstanceTypes=["c5.xlarge"])
        _denied(s3.delete_object, Bucket=IAM_BUCKET, Key="campaigns/a/campaign.json")
        _denied(s3.put_object, Bucket=IAM_BUCKET, Key="jobs/j1/out.txt", Body=b"x")
        _denied(iam.create_user, UserName="escalate")
        _denied(ssm.put_parameter, Name="/trainfleet/bucket", Value="elsewhere", Type="String", Overwrite=True)

    _under_enforced_iam({"Version": "2012-10-17", "Statement": statements}, calls)


def test_instance_role_reads_only_the_stack_parameters(templates):
    (statement,) = [s for s in _instance_role_statements(templates) if "ssm:GetParameter" in _listed(s["Action"])]
    assert statement["Resource"]["Fn::Join"][1][-1] == ":parameter/trainfleet/*"


def test_launcher_policy_has_exactly_its_actions(templates):
    assert _actions(_statements(_launcher(templates))) == LAUNCHER_ACTIONS


def test_launcher_policy_is_named_per_region_and_exported(templates):
    assert _launcher(templates)["Properties"]["ManagedPolicyName"] == {
        "Fn::Join": ["", ["trainfleet-launcher-", {"Ref": "AWS::Region"}]]}
    (policy_id,) = templates["compute"].find_resources("AWS::IAM::ManagedPolicy")
    assert templates["compute"].to_json()["Outputs"]["LauncherPolicyArn"]["Value"] == {"Ref": policy_id}


def test_launcher_runs_tagged_instances_from_the_stack_templates_only(templates):
    run = _launcher_statement(templates, "RunFromTrainfleetTemplates")
    resources = json.dumps(run["Resource"])
    assert all(f'"Ref": "{lt}"' in resources for lt in _launch_templates(templates))
    assert resources.count(":launch-template/") == 4 and resources.count("::image/") == 2
    assert resources.count(":subnet/") == 2 and resources.count(":security-group/") == 1
    tagged = _launcher_statement(templates, "RunCampaignTaggedInstances")
    assert tagged["Resource"]["Fn::Join"][1][-1] == ":instance/*"
    assert tagged["Condition"] == {"Null": {"aws:RequestTag/trainfleet:campaign": "false"}}
    tags = _launcher_statement(templates, "TagOnlyAtLaunch")
    assert tags["Condition"] == {"StringEquals": {"ec2:CreateAction": "RunInstances"}}


def test_launcher_ends_only_campaign_tagged_resources(templates):
    end = _launcher_statement(templates, "EndCampaignTaggedOnly")
    assert sorted(end["Action"]) == ["ec2:CancelSpotInstanceRequests", "ec2:TerminateInstances"]
    assert end["Condition"] == {"Null": {"aws:ResourceTag/trainfleet:campaign": "false"}}


def test_launcher_passes_only_the_instance_role_to_ec2(templates):
    passing = _launcher_statement(templates, "PassInstanceRoleToEc2")
    assert passing["Resource"] == {"Fn::GetAtt": [_role_id(templates), "Arn"]}
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}


def test_launcher_may_create_only_the_spot_service_linked_role(templates):
    """A first spot launch through the API needs AWSServiceRoleForEC2Spot; EC2 creates it with the caller's
    iam:CreateServiceLinkedRole, else refuses (AuthFailure.ServiceLinkedRoleCreationNotPermitted)."""
    create = _launcher_statement(templates, "CreateSpotServiceLinkedRole")
    assert create["Action"] == "iam:CreateServiceLinkedRole"
    assert create["Condition"] == {"StringLike": {"iam:AWSServiceName": "spot.amazonaws.com"}}
    assert json.dumps(create["Resource"]).endswith(
        ':role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"]]}')


def test_no_wildcard_action_and_no_star_resource_beyond_describe_and_session_manager(templates):
    for statement in _all_statements(templates):
        if statement["Effect"] == "Deny":  # the bucket policy's deny of s3:* without TLS
            continue
        for action in _listed(statement["Action"]):
            assert "*" not in action and "?" not in action, statement  # also no partial wildcard (s3:Get*)
        assert "NotAction" not in statement and "NotResource" not in statement, statement
        if "*" in _listed(statement["Resource"]):
            assert set(_listed(statement["Action"])) <= STAR_RESOURCE_ACTIONS, statement


def test_delete_object_version_appears_nowhere(templates):
    for template in templates.values():
        assert "DeleteObjectVersion" not in json.dumps(template.to_json())
        assert "s3:DeleteObject*" not in json.dumps(template.to_json())


def test_exports_every_launcher_value_to_ssm(templates):
    names = {p["Properties"]["Name"] for p in templates["compute"].find_resources("AWS::SSM::Parameter").values()}
    versions = {f"/trainfleet/launch-template-versions/{kind}-{market}"  # read by job stacks (not exports)
                for kind in ("cpu", "gpu") for market in ("spot", "on-demand")}
    assert names == {f"/trainfleet/{suffix}" for suffix in EXPORTS.values()} | versions
    assert "/trainfleet/launch-templates" in names


def test_launch_templates_export_resolves_to_ids_per_image_and_market(templates):
    (parameter,) = [p for p in templates["compute"].find_resources("AWS::SSM::Parameter").values()
                    if p["Properties"]["Name"] == "/trainfleet/launch-templates"]
    separator, parts = parameter["Properties"]["Value"]["Fn::Join"]
    value = json.loads(separator.join(p if isinstance(p, str) else f"lt-{p['Ref']}" for p in parts))
    assert value == {
        "gpu": {"spot": "lt-ComputeGpuSpotTemplate66287059", "on-demand": "lt-ComputeGpuOnDemandTemplate5BA85953",
                "root_volume_gib": 100},
        "cpu": {"spot": "lt-ComputeCpuSpotTemplate1E747F1F", "on-demand": "lt-ComputeCpuOnDemandTemplate2C9BE573",
                "root_volume_gib": 30},
    }
    data = {f"lt-{k}": v["Properties"]["LaunchTemplateData"] for k, v in _launch_templates(templates).items()}
    for kind in value:
        assert "InstanceMarketOptions" in data[value[kind]["spot"]]
        assert "InstanceMarketOptions" not in data[value[kind]["on-demand"]]


def test_outputs_name_each_template(templates):
    outputs = templates["compute"].to_json()["Outputs"]
    for key in ("GpuSpotLaunchTemplateId", "GpuOnDemandLaunchTemplateId", "CpuSpotLaunchTemplateId",
                "CpuOnDemandLaunchTemplateId"):
        assert outputs[key]["Value"]["Ref"] in _launch_templates(templates)


def test_launcher_policy_covers_every_ec2_call_of_the_ec2_backend(templates):
    """The policy is derived from the code: each EC2 API the backend calls has its action."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "instance_benchmarks"
    sources = [*(root / "backends" / "ec2").glob("*.py"), root / "catalog" / "pricing.py"]
    calls = set()
    for source in sources:
        text = source.read_text()
        calls |= set(re.findall(r"\.(describe_\w+|run_instances|terminate_instances|cancel_spot_instance_requests|"
                                r"create_tags|modify_\w+|start_instances|stop_instances)\(", text))
        calls |= set(re.findall(r"get_paginator\(\"(describe_\w+)\"\)", text))
    assert "run_instances" in calls and "describe_spot_price_history" in calls
    needed = {"ec2:" + "".join(part.capitalize() for part in call.split("_")) for call in calls}
    assert needed <= set(LAUNCHER_ACTIONS), needed - set(LAUNCHER_ACTIONS)
