"""`trainfleet doctor --local`: moto's clients, with stand-ins for the reads moto 5.2 cannot answer.

- Service Quotas: moto knows only VPC quotas (GetServiceQuota of an EC2 code is NoSuchResourceException);
  the local workers that run the instances have no vCPU quota, so every EC2 quota reads as unlimited.
- IAM SimulatePrincipalPolicy: not implemented by moto; moto's caller may call everything, so every action
  reads as allowed.
- EC2 Spot's service-linked role: moto creates no service-linked roles by itself; the role reads as present.
- The CDK bootstrap stack is not checkable: the embedded default deploys the templates with CloudFormation
  directly (embedded/deploy.py), without the CDK CLI and its bootstrap stack.

Each stand-in answers in the shape AWS documents, so the real check code runs on it; the table names
these checks "stubbed on the embedded default".
"""
from __future__ import annotations

from instance_benchmarks.doctor import BOOTSTRAP, LAUNCHER, QUOTAS, SPOT_ROLE, SPOT_ROLE_CHECK, StandIns

STAND_INS = StandIns(
    stubbed={
        **{name: "moto has no EC2 quotas; the local workers have no vCPU limit" for name in QUOTAS.values()},
        LAUNCHER: "moto cannot simulate IAM policies; its caller may call everything",
        SPOT_ROLE_CHECK: "moto creates no service-linked roles",
    },
    not_checkable={BOOTSTRAP: "it deploys the templates without the CDK CLI and its bootstrap stack"},
)


class _Delegate:
    def __init__(self, client, client_for) -> None:
        self._client, self._client_for = client, client_for

    def __getattr__(self, name: str):
        return getattr(self._client, name)


class StandInQuotas(_Delegate):
    """GetServiceQuota of an EC2 quota: unlimited (moto answers the VPC quotas it knows itself)."""

    def get_service_quota(self, *, ServiceCode: str, QuotaCode: str, **kwargs) -> dict:
        if ServiceCode != "ec2":
            return self._client.get_service_quota(ServiceCode=ServiceCode, QuotaCode=QuotaCode, **kwargs)
        return {"Quota": {"ServiceCode": "ec2", "QuotaCode": QuotaCode, "Value": float("inf"), "Unit": "None",
                          "Adjustable": True, "GlobalQuota": False}}


class _AllowedPages:
    def paginate(self, *, ActionNames: list[str], ResourceArns: list[str] | None = None, **kwargs):
        resources = ResourceArns or ["*"]
        yield {"EvaluationResults": [{"EvalActionName": action, "EvalResourceName": resource, "EvalDecision": "allowed"}
                                     for action in ActionNames for resource in resources],
               "IsTruncated": False}


class StandInIam(_Delegate):
    """SimulatePrincipalPolicy: allowed; GetRole of EC2 Spot's service-linked role: present; the rest is moto."""

    def get_paginator(self, operation: str):
        return _AllowedPages() if operation == "simulate_principal_policy" else self._client.get_paginator(operation)

    def get_role(self, *, RoleName: str, **kwargs) -> dict:
        if RoleName != SPOT_ROLE:
            return self._client.get_role(RoleName=RoleName, **kwargs)
        account = self._client_for("sts").get_caller_identity()["Account"]
        return {"Role": {"RoleName": SPOT_ROLE, "Path": "/aws-service-role/spot.amazonaws.com/",
                         "Arn": f"arn:aws:iam::{account}:role/aws-service-role/spot.amazonaws.com/{SPOT_ROLE}"}}


STAND_IN_CLIENTS = {"service-quotas": StandInQuotas, "iam": StandInIam}


def stand_in_clients(client):
    """`client(service)`, with the stand-ins above for Service Quotas and IAM; and the checks they answer."""
    def make(service: str):
        real = client(service)
        return STAND_IN_CLIENTS[service](real, client) if service in STAND_IN_CLIENTS else real

    return make, STAND_INS
