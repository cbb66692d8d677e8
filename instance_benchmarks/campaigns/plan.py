"""Before anything launches: the worst-case and expected cost of a campaign, and the budget check."""
from __future__ import annotations

import math
from dataclasses import dataclass

from instance_benchmarks.catalog.pricing import PriceQuote
from instance_benchmarks.core.billing import cost_usd
from instance_benchmarks.core.errors import TrainfleetInputError


@dataclass(frozen=True)
class Estimate:
    runs: int
    worst_case_usd: float
    expected_usd: float | None
    per_run: dict  # run_id -> (usd_per_hour, worst_case_usd)

    def within(self, budget: float) -> bool:
        return self.worst_case_usd <= budget


def estimate(spec, quotes: dict[str, PriceQuote]) -> Estimate:
    """Worst case = every run hits its watchdog at the highest price it can be billed (spot rises at most
    to on-demand); expected = estimated_minutes at the quoted price."""
    per_run, worst, expected = {}, 0.0, 0.0
    for run in spec.runs():
        quote = quotes[run.instance_type]
        price = quote.usd_per_hour
        run_worst = quote.worst_cost(spec.max_runtime_minutes * 60)
        per_run[run.run_id] = (price, run_worst)
        worst += run_worst
        if spec.estimated_minutes is not None:
            expected += cost_usd(spec.estimated_minutes * 60, price)
    return Estimate(len(per_run), worst, expected if spec.estimated_minutes is not None else None, per_run)


def spent_usd(launch_record: dict) -> float:
    """What a run's settled attempts cost (live attempts are counted at their worst case by the caller)."""
    return sum(a["cost_usd"] for a in launch_record.get("attempts", [])
               if isinstance(a.get("cost_usd"), (int, float)) and math.isfinite(a["cost_usd"]))


def check_budget(budget_usd: float, *, needed: float, already: float, count: int) -> None:
    """Refuse (nothing launched) unless what is spent or committed plus the new worst case fits the budget."""
    if not already + needed <= budget_usd:  # `not <=` also refuses NaN
        raise TrainfleetInputError(
            f"budget ${budget_usd:.2f} refused: worst case ${needed:.2f} for {count} runs "
            f"(+ ${already:.2f} spent or committed) exceeds it; nothing launched"
        )
