from aws_cdk.assertions import Match

from instance_benchmarks.core.contract import SSM_EXPORTS as EXPORTS


def _template_data(templates, market_options):
    templates["compute"].has_resource_properties(
        "AWS::EC2::LaunchTemplate", {"LaunchTemplateData": Match.object_like(market_options)}
    )


def test_spot_template_one_time_terminate(templates):
    _template_data(templates, {"InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": {
        "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}})


def test_templates_require_imdsv2_encrypt_root_and_terminate_on_shutdown(templates):
    templates["compute"].resource_count_is("AWS::EC2::LaunchTemplate", 2)
    found = templates["compute"].find_resources("AWS::EC2::LaunchTemplate")
    for resource in found.values():
        data = resource["Properties"]["LaunchTemplateData"]
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        assert data["InstanceInitiatedShutdownBehavior"] == "terminate"
        assert all(b["Ebs"]["Encrypted"] for b in data["BlockDeviceMappings"])


def test_security_group_has_no_ingress(templates):
    groups = templates["compute"].find_resources("AWS::EC2::SecurityGroup")
    assert groups and all("SecurityGroupIngress" not in g["Properties"] for g in groups.values())
    templates["compute"].resource_count_is("AWS::EC2::SecurityGroupIngress", 0)


def test_ami_comes_from_configurable_ssm_parameter(templates):
    params = templates["compute"].to_json()["Parameters"]
    assert any(p.get("Default") == "/custom/ami" and "SSM::Parameter" in p["Type"] for p in params.values())


def test_instance_role_gets_bucket_access_by_grant_only(templates):
    templates["compute"].has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Action": Match.array_with(["s3:GetObject*", "s3:PutObject"]), "Effect": "Allow"})])}})
    templates["compute"].resource_count_is("AWS::IAM::InstanceProfile", 1)


def test_exports_every_launcher_value_to_ssm(templates):
    names = {p["Properties"]["Name"] for p in templates["compute"].find_resources("AWS::SSM::Parameter").values()}
    assert names == {f"/trainfleet/{suffix}" for suffix in EXPORTS.values()}
