"""`trainfleet info`: where trainfleet points (region, caller, bucket, stacks, launch templates, campaigns)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from instance_benchmarks import runner
from instance_benchmarks.campaigns.store import list_campaigns
from instance_benchmarks.commands.output import plain_log
from instance_benchmarks.commands.shared import LOCAL_OPTION, PREFIX_OPTION, STATE_OPTION, environment
from instance_benchmarks.core.contract import STACKS


def info(region: Optional[str] = typer.Option(None, help="AWS region (default: your AWS config)."),
         ssm_prefix: str = PREFIX_OPTION, local: bool = LOCAL_OPTION, state: Optional[Path] = STATE_OPTION) -> None:
    """Where trainfleet points: region, caller identity, bucket, the stacks and their status, the launch
    templates the Compute stack exported, and the campaigns in the bucket (with --local: the embedded
    default's, restored from the local state folder)."""
    env = environment(local, region, ssm_prefix, state=state)
    identity = env.client("sts").get_caller_identity()
    infra = env.infra  # a one-line error (exit 2) when the stacks are not deployed here
    stacks, unreadable = [], None
    cloudformation = env.client("cloudformation")
    try:
        for page in cloudformation.get_paginator("describe_stacks").paginate():
            stacks += [s for s in page["Stacks"] if s["StackName"] in STACKS or s["StackName"].startswith("TrainingJob")]
    except cloudformation.exceptions.ClientError as error:  # the launcher policy need not allow DescribeStacks
        unreadable = f"cannot read ({error.response.get('Error', {}).get('Code', error)})"
    lines = [("local state", str(env.state.root))] if local else []
    lines += [("region", runner.env_region(env)), ("account", identity.get("Account")), ("caller", identity.get("Arn")),
              ("bucket", f"s3://{infra.bucket}"), ("ssm exports", f"{ssm_prefix}/*"),
              ("subnets", ", ".join(infra.subnet_ids)), ("security group", infra.security_group_id)]
    for name in STACKS + tuple(sorted(s["StackName"] for s in stacks if s["StackName"] not in STACKS)):
        found = next((s for s in stacks if s["StackName"] == name), None)
        lines.append((f"stack {name}", unreadable or (found["StackStatus"] if found else "not deployed")))
    for image, entry in sorted(infra.launch_templates.items()):
        lines.append((f"launch templates {image}", f"spot {entry['spot']}, on-demand {entry['on-demand']}, "
                                                   f"root volume {entry['root_volume_gib']} GiB"))
    campaigns = list_campaigns(env.client("s3"), infra.bucket)
    lines.append(("campaigns", f"{len(campaigns)}: {', '.join(campaigns)}" if campaigns else "none"))
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        plain_log(f"{key:<{width}}  {value}")
