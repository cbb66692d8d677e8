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


def run_instance(ec2, *, campaign: str, run_id: str, attempt: int, instance_type: str, market: str,
                 template_id: str, subnet: str, user_data: str) -> dict:
    tags = [{"Key": CAMPAIGN_TAG, "Value": campaign}, {"Key": RUN_TAG, "Value": run_id},
            {"Key": ATTEMPT_TAG, "Value": str(attempt)}, {"Key": "Name", "Value": f"trainfleet-{run_id}"}]
    resource_types = ["instance", "volume"] + (["spot-instances-request"] if market == "spot" else [])
    response = ec2.run_instances(
        LaunchTemplate={"LaunchTemplateId": template_id, "Version": "$Latest"},
        InstanceType=instance_type, MinCount=1, MaxCount=1, SubnetId=subnet, UserData=user_data,
        ClientToken=client_token(campaign, run_id, attempt),
        TagSpecifications=[{"ResourceType": rt, "Tags": tags} for rt in resource_types],
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
