from __future__ import annotations

from aws_cdk import CfnOutput, Fn, Stack
from constructs import Construct

from stacks.constructs.training_network import TrainingNetwork


class NetworkStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, max_azs: int, private_subnets: bool = False,
                 restrict_default_security_group: bool = True, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        network = TrainingNetwork(self, "Network", max_azs=max_azs, private_subnets=private_subnets,
                                  restrict_default_security_group=restrict_default_security_group)
        self.vpc = network.vpc
        CfnOutput(self, "VpcId", value=self.vpc.vpc_id)
        CfnOutput(self, "SubnetIds", value=Fn.join(",", [s.subnet_id for s in network.instance_subnets]))
