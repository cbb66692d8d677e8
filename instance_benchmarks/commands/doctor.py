"""`trainfleet doctor`: check an account and region before a first campaign (instance_benchmarks/doctor.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from instance_benchmarks.commands import output
from instance_benchmarks.commands.shared import LOCAL_OPTION, PREFIX_OPTION, REGION_OPTION, STATE_OPTION, environment
from instance_benchmarks.doctor import doctor as run_doctor


def doctor(region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION, local: bool = LOCAL_OPTION,
           state: Optional[Path] = STATE_OPTION,
           campaign: Optional[Path] = typer.Option(None, help="Campaign YAML whose runs the vCPU quotas must fit.")) -> None:
    """Check an account and region before a first campaign, changing nothing: credentials, CDK bootstrap, the
    stacks and their version, the spot service-linked role, vCPU quotas, the launcher policy, the images'
    SSM parameters, the bucket. One table with a fix per failure; exit 1 when a check fails."""
    raise typer.Exit(run_doctor(lambda where: environment(local, where, ssm_prefix, state=state), region, campaign,
                                output.console))
