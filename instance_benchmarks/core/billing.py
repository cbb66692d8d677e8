"""What an instance's time costs: AWS per-second billing. Read by the launcher (the runner, the backends, the
plan) and by the agent on the instance, which reports its own attempt's cost."""
from __future__ import annotations

import math

MINIMUM_BILLED_SECONDS = 60


def billed_seconds(seconds: float) -> int:
    """Linux on EC2 bills per second with a 60-second minimum per instance start."""
    if seconds < 0:
        raise ValueError(f"negative duration: {seconds}")
    return max(MINIMUM_BILLED_SECONDS, math.ceil(seconds))


def cost_usd(seconds: float, usd_per_hour: float) -> float:
    return billed_seconds(seconds) * usd_per_hour / 3600.0
