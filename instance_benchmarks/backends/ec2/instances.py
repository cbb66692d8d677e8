"""EC2 calls for campaign runs: one tagged instance per attempt from the Compute stack's launch templates.

Every function takes boto3 clients as arguments. Instances carry the tags `trainfleet:campaign`,
`trainfleet:run` and `trainfleet:attempt`; each attempt has an EC2 ClientToken, so a retried launch is a
no-op, and everything is found by tag, so teardown works even after the launcher died.
"""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone

from instance_benchmarks.core.contract import ATTEMPT_TAG, CAMPAIGN_TAG, RUN_TAG

LIVE_STATES = ["pending", "running", "stopping", "stopped"]
_TRANSITION_TIME = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) GMT\)")


def campaign_instances(ec2, campaign: str, states: list[str] | None = None) -> list[dict]:
    filters = [{"Name": f"tag:{CAMPAIGN_TAG}", "Values": [campaign]}]
    if states:
        filters.append({"Name": "instance-state-name", "Values": states})
    instances = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            instances.extend(reservation["Instances"])
    return instances


def tag(instance: dict, key: str) -> str | None:
    return next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == key), None)


def client_token(campaign: str, run_id: str, attempt: int) -> str:
    """EC2 allows 64 ASCII characters: long names are hashed so the attempt number is never cut off."""
    token = f"{campaign}/{run_id}/{attempt}"
    if len(token) <= 64:
        return token
    return f"{hashlib.sha256(token.encode()).hexdigest()[:40]}/{attempt}"


# Service Quotas names of EC2's vCPU quotas by instance class (EC2 User Guide, "Spot Instance quotas" and
# "On-Demand Instance quotas"); VcpuLimitExceeded / MaxSpotInstanceCountExceeded name none of them.
_QUOTA_CLASSES = (("p5", "P5", "P"), ("p6", "P5", "P"), ("p", "P4, P3 and P2", "P"), ("g", "G and VT", "G and VT"),
                  ("vt", "G and VT", "G and VT"), ("inf", "Inf", "Inf"), ("trn", "Trn", "Trn"), ("dl", "DL", "DL"),
                  ("f", "F", "F"), ("x", "X", "X"))
_STANDARD = "Standard (A, C, D, H, I, M, R, T, Z)"


def vcpu_quota_name(instance_type: str, market: str) -> str:
    """The Service Quotas quota (service "Amazon Elastic Compute Cloud (Amazon EC2)") a launch counts against."""
    family = instance_type.split(".", 1)[0]
    spot_class, on_demand_class = next(((s, o) for prefix, s, o in _QUOTA_CLASSES if family.startswith(prefix)),
                                       (_STANDARD, _STANDARD))
    if market == "spot":
        return f"All {spot_class} Spot Instance Requests"
    return f"Running On-Demand {on_demand_class} instances"


def run_instance(ec2, *, campaign: str, run_id: str, attempt: int, instance_type: str, market: str,
                 template_id: str, subnet: str, user_data: str, burstable: bool = False) -> dict:
    tags = [{"Key": CAMPAIGN_TAG, "Value": campaign}, {"Key": RUN_TAG, "Value": run_id},
            {"Key": ATTEMPT_TAG, "Value": str(attempt)}, {"Key": "Name", "Value": f"trainfleet-{run_id}"}]
    resource_types = ["instance", "volume"] + (["spot-instances-request"] if market == "spot" else [])
    response = ec2.run_instances(
        LaunchTemplate={"LaunchTemplateId": template_id, "Version": "$Latest"},
        InstanceType=instance_type, MinCount=1, MaxCount=1, SubnetId=subnet, UserData=user_data,
        ClientToken=client_token(campaign, run_id, attempt),
        TagSpecifications=[{"ResourceType": rt, "Tags": tags} for rt in resource_types],
        # T family: standard credits, so a busy run is throttled to baseline instead of billed for surplus credits
        **({"CreditSpecification": {"CpuCredits": "standard"}} if burstable else {}),
    )
    return response["Instances"][0]


def ended_at(instance: dict) -> datetime | None:
    """When an ended instance stopped running, from EC2's state transition reason."""
    match = _TRANSITION_TIME.search(instance.get("StateTransitionReason") or "")
    if match:
        return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    return None


def terminate_campaign(ec2, campaign: str) -> tuple[list[str], list[str]]:
    """Terminate every live instance of the campaign and cancel its open spot requests (by tag)."""
    ids = [i["InstanceId"] for i in campaign_instances(ec2, campaign, LIVE_STATES)]
    requests = ec2.describe_spot_instance_requests(
        Filters=[{"Name": f"tag:{CAMPAIGN_TAG}", "Values": [campaign]},
                 {"Name": "state", "Values": ["open", "active"]}])["SpotInstanceRequests"]
    request_ids = [r["SpotInstanceRequestId"] for r in requests]
    if request_ids:
        ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=request_ids)
    if ids:
        ec2.terminate_instances(InstanceIds=ids)
    return ids, request_ids
