"""The VPC instances launch in.

Default: public subnets only. Instances get a public IPv4 address for egress (git clone, pip, the AWS
APIs), so there is no NAT gateway's fixed cost; nothing is reachable from outside (the security group has
no ingress) and S3 traffic goes through a free gateway endpoint. With `private_subnets`, instances launch in
private subnets without public addresses and reach the internet through one NAT gateway (about $33 a month
in us-east-1, plus $0.045 per GB it processes; S3 still bypasses it through the endpoint).
"""
from __future__ import annotations

from aws_cdk import CfnResource, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.constructs.nag import checkov_skip


def instance_subnets(vpc: ec2.IVpc) -> list[ec2.ISubnet]:
    """The subnets instances launch in: the private ones when the network has them, else the public ones."""
    return list(vpc.private_subnets) or list(vpc.public_subnets)


class TrainingNetwork(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, max_azs: int, private_subnets: bool = False,
                 restrict_default_security_group: bool = True) -> None:
        super().__init__(scope, construct_id)
        subnets = [ec2.SubnetConfiguration(name="Public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=20)]
        if private_subnets:
            subnets.append(ec2.SubnetConfiguration(name="Private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS,
                                                   cidr_mask=20))
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=max_azs,
            nat_gateways=1 if private_subnets else 0,  # one for all AZs: the fixed cost once
            # CDK's custom resource removes the default security group's rules (a Lambda function; CloudFormation
            # itself cannot); the embedded default turns it off, as moto cannot run Lambda functions.
            restrict_default_security_group=restrict_default_security_group,
            subnet_configuration=subnets,
            gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
        )
        self.instance_subnets = instance_subnets(self.vpc)
        provider = Stack.of(self).node.try_find_child("Custom::VpcRestrictDefaultSGCustomResourceProvider")
        if provider is not None:  # its handler's DependsOn on its role repeats the Fn::GetAtt (cfn-lint W3005)
            handler = provider.node.find_child("Handler")
            assert isinstance(handler, CfnResource)
            handler.add_deletion_override("DependsOn")
            checkov_skip(handler, {
                "CKV_AWS_115": "CDK's handler, invoked only by CloudFormation when the stack is deployed: no "
                               "concurrency to limit",
                "CKV_AWS_116": "CloudFormation invokes it synchronously and reports its failure on the stack; "
                               "a dead-letter queue would receive nothing",
                "CKV_AWS_117": "it calls only the EC2 API: inside the VPC it would need a NAT gateway or an "
                               "interface endpoint, for a function that runs once per deploy"})
        flow_log_group = logs.LogGroup(
            self, "FlowLogGroup", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
        )
        checkov_skip(flow_log_group.node.default_child, {
            "CKV_AWS_158": "CloudWatch Logs encrypts every log group at rest; a customer managed KMS key "
                           "($1 a month, a key policy for the logs service) adds nothing for flow records "
                           "(addresses, ports, bytes) kept 30 days"})
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
