import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from stacks.app_stacks import build_stacks
from stacks.config import AppConfig
from tests.stacks.conftest import IMAGES, JOB


def test_no_nat_gateway_and_public_subnets_only(templates):
    net = templates["network"]
    net.resource_count_is("AWS::EC2::NatGateway", 0)
    net.resource_count_is("AWS::EC2::Subnet", 2)
    for subnet in net.find_resources("AWS::EC2::Subnet").values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is True  # egress without a NAT gateway (README)


def test_s3_gateway_endpoint(templates):
    templates["network"].has_resource_properties("AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway"})


def test_flow_logs_record_all_traffic(templates):
    templates["network"].resource_count_is("AWS::EC2::FlowLog", 1)
    templates["network"].has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL"})


def test_the_default_security_group_is_restricted(templates):
    (restrict,) = templates["network"].find_resources("Custom::VpcRestrictDefaultSG").values()
    (vpc_id,) = templates["network"].find_resources("AWS::EC2::VPC")
    assert restrict["Properties"]["DefaultSecurityGroupId"] == {"Fn::GetAtt": [vpc_id, "DefaultSecurityGroup"]}


def test_the_only_lambda_is_cdks_default_security_group_restriction(templates):
    """Its role may only rewrite the VPC's default security group's rules (plus CloudWatch Logs through
    AWSLambdaBasicExecutionRole); nothing else in the app runs as a Lambda function."""
    for name, template in templates.items():
        resources = template.to_json()["Resources"]
        custom = sorted(r["Type"] for r in resources.values() if r["Type"].startswith("Custom::"))
        functions = template.find_resources("AWS::Lambda::Function")
        if name != "network":
            assert (custom, functions) == ([], {}), name
            continue
        assert custom == ["Custom::VpcRestrictDefaultSG"] and len(functions) == 1
        (function,) = functions.values()
        role = resources[function["Properties"]["Role"]["Fn::GetAtt"][0]]
        (policy,) = role["Properties"]["Policies"]
        (statement,) = policy["PolicyDocument"]["Statement"]
        assert sorted(statement["Action"]) == ["ec2:AuthorizeSecurityGroupEgress", "ec2:AuthorizeSecurityGroupIngress",
                                               "ec2:RevokeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress"]
        (resource,) = statement["Resource"]
        assert resource["Fn::Join"][1][-2:] == [":security-group/", {"Fn::GetAtt": [next(iter(
            template.find_resources("AWS::EC2::VPC"))), "DefaultSecurityGroup"]}]


def test_the_embedded_default_leaves_the_default_security_group_alone():
    from instance_benchmarks.embedded.cloud import local_config

    assert AppConfig().restrict_default_security_group and not local_config().restrict_default_security_group


@pytest.fixture(scope="module")
def private():
    """The app with `-c private_subnets=true` (cdk-nag runs: raises on any unacknowledged finding)."""
    app = cdk.App()
    stacks = build_stacks(app, AppConfig(images=IMAGES, job=JOB, private_subnets=True))
    app.synth()
    return {name: Template.from_stack(getattr(stacks, name)) for name in ("network", "compute", "training_job")}


def test_private_subnets_option_adds_one_nat_gateway(private):
    net = private["network"]
    net.resource_count_is("AWS::EC2::NatGateway", 1)
    net.resource_count_is("AWS::EC2::Subnet", 4)
    subnets = net.find_resources("AWS::EC2::Subnet")
    private_ids = sorted(i for i, s in subnets.items() if s["Properties"]["MapPublicIpOnLaunch"] is False)
    assert len(private_ids) == 2
    net.has_resource_properties("AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway"})  # S3 bypasses the NAT
    net.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL"})
    assert net.to_json()["Outputs"]["SubnetIds"]["Value"]["Fn::Join"][1] == [{"Ref": i} for i in private_ids]


def test_private_subnets_option_launches_instances_without_public_ips(private):
    net = private["network"].to_json()
    public_ids = {i for i, r in net["Resources"].items()
                  if r["Type"] == "AWS::EC2::Subnet" and r["Properties"]["MapPublicIpOnLaunch"]}
    compute = private["compute"].to_json()
    (exported,) = [p for p in compute["Resources"].values()
                   if p["Type"] == "AWS::SSM::Parameter" and p["Properties"]["Name"] == "/trainfleet/subnet-ids"]
    imports = [ref["Fn::ImportValue"] for ref in exported["Properties"]["Value"]["Fn::Join"][1]]
    assert len(imports) == 2 and all("Private" in i and "Public" not in i for i in imports)
    for template in private["compute"].find_resources("AWS::EC2::LaunchTemplate").values():
        interfaces = template["Properties"]["LaunchTemplateData"].get("NetworkInterfaces", [])
        assert not any(i.get("AssociatePublicIpAddress") for i in interfaces)
    (instance,) = private["training_job"].find_resources("AWS::EC2::Instance").values()
    subnet = instance["Properties"]["SubnetId"]["Fn::ImportValue"]
    assert "Private" in subnet and not public_ids & {subnet}
