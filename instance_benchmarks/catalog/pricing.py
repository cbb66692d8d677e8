"""Prices and cost: spot prices at launch time and AWS per-second billing.

`describe_spot_price_history` is the only price API called at run time; on-demand prices come from
the dated catalog. The price chosen is stored with each run so reports never re-price old runs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

from instance_benchmarks.catalog import InstanceSpec
from instance_benchmarks.core.billing import cost_usd
from instance_benchmarks.core.contract import now_iso

@dataclass(frozen=True)
class PriceQuote:
    """The price a run is launched at; stored in its record and result."""

    instance_type: str
    region: str
    market: str  # "spot" or "on-demand"
    usd_per_hour: float
    on_demand_usd_per_hour: float
    source: str  # "describe_spot_price_history", "catalog <date>" ...
    quoted_at: str
    storage_usd_per_hour: float = 0.0  # the root volume's share, included in both prices above
    availability_zone: str | None = None  # where the spot price was quoted (launches try it first)

    def cost(self, seconds: float) -> float:
        return cost_usd(seconds, self.usd_per_hour)

    @property
    def worst_usd_per_hour(self) -> float:
        """What an hour can cost at most: a spot price may rise up to the on-demand price during a run
        (EC2's default spot maximum price), so budgets use the on-demand price."""
        return max(self.usd_per_hour, self.on_demand_usd_per_hour)

    def worst_cost(self, seconds: float) -> float:
        return cost_usd(seconds, self.worst_usd_per_hour)

    def to_dict(self) -> dict:
        return asdict(self)


def latest_spot_price(ec2_client, instance_type: str, *, product: str = "Linux/UNIX",
                      zones: frozenset[str] | None = None) -> tuple[float, str] | None:
    """Lowest current spot price for `instance_type` across `zones` (the stack's subnets' AZs; every AZ
    if None), with the AZ; None when AWS reports none there."""
    now = datetime.now(timezone.utc)
    paginator = ec2_client.get_paginator("describe_spot_price_history")
    latest_by_az: dict[str, tuple[datetime, float]] = {}
    for page in paginator.paginate(
        InstanceTypes=[instance_type],
        ProductDescriptions=[product],
        StartTime=now - timedelta(hours=3),
        EndTime=now,
    ):
        for item in page.get("SpotPriceHistory", []):
            az, ts, price = item["AvailabilityZone"], item["Timestamp"], float(item["SpotPrice"])
            if zones is not None and az not in zones:
                continue
            if az not in latest_by_az or ts > latest_by_az[az][0]:
                latest_by_az[az] = (ts, price)
    if not latest_by_az:
        return None
    az, (_, price) = min(latest_by_az.items(), key=lambda kv: kv[1][1])
    return price, az


def quote(ec2_client, spec: InstanceSpec, *, region: str, market: str, spot_history: bool = True, zones: frozenset[str] | None = None, storage_usd_per_hour: float = 0.0,
          storage_note: str = "") -> PriceQuote:
    """Price a launch now: the instance (spot from `describe_spot_price_history` in `zones`, else the
    catalog's on-demand price) plus its root volume (`storage_usd_per_hour`, in every figure).
    Spot falls back to the on-demand price (the spot ceiling) if AWS reports none there or
    `spot_history` is off (the embedded default: moto's spot history holds placeholder prices)."""
    on_demand, dated = spec.on_demand_price(region), spec.on_demand_date(region)
    now, storage = now_iso(), storage_usd_per_hour
    extra = f" + {storage_note}" if storage_note else ""
    if market == "spot":
        found = latest_spot_price(ec2_client, spec.name, zones=zones) if spot_history else None
        if found is not None:
            price, az = found
            return PriceQuote(spec.name, region, "spot", min(price, on_demand) + storage, on_demand + storage,
                              f"describe_spot_price_history ({az}){extra}", now, storage, az)
        reason = "no spot price history in the stack's AZs" if spot_history else "spot history not used"
        return PriceQuote(spec.name, region, "spot", on_demand + storage, on_demand + storage,
                          f"{reason}; on-demand ceiling: catalog price of {dated}{extra}", now, storage)
    return PriceQuote(spec.name, region, "on-demand", on_demand + storage, on_demand + storage,
                      f"catalog price of {dated}{extra}", now, storage)
