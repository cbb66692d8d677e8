def test_no_nat_gateway_and_public_subnets_only(templates):
    net = templates["network"]
    net.resource_count_is("AWS::EC2::NatGateway", 0)
    net.resource_count_is("AWS::EC2::Subnet", 2)
    net.has_resource_properties("AWS::EC2::Subnet", {"MapPublicIpOnLaunch": True})


def test_s3_gateway_endpoint(templates):
    templates["network"].has_resource_properties("AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway"})


def test_flow_logs(templates):
    templates["network"].resource_count_is("AWS::EC2::FlowLog", 1)


def test_no_lambda_anywhere(templates):
    for template in templates.values():
        template.resource_count_is("AWS::Lambda::Function", 0)
        assert not [r for r in template.to_json()["Resources"].values() if r["Type"].startswith("Custom::")]
