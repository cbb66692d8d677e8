"""How runs start and stop: one EC2 instance per run from the Compute stack's launch templates.

Every function takes boto3 clients as arguments. Instances carry the tags `trainfleet:campaign` and
`trainfleet:run`; launching is idempotent (finished and live runs are skipped, and each attempt has an
EC2 ClientToken), and `teardown` finds everything by tag, so it works even after the launcher died.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from instance_benchmarks.campaign import CampaignSpec, RunSpec, estimate, override_args
from instance_benchmarks.catalog import Catalog, load_catalog
from instance_benchmarks.errors import TrainfleetInputError
from instance_benchmarks.pricing import PriceQuote, cost_usd, quote
from instance_benchmarks.results import read_json, record_campaign, run_location, run_prefix, write_json
from instance_benchmarks.userdata import Bootstrap, build_user_data

CAMPAIGN_TAG = "trainfleet:campaign"
RUN_TAG = "trainfleet:run"
ATTEMPT_TAG = "trainfleet:attempt"
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
SSM_KEYS = {
    "bucket": "bucket-name",
    "spot_template_id": "launch-template/spot-id",
    "on_demand_template_id": "launch-template/on-demand-id",
    "subnet_ids": "subnet-ids",
    "security_group_id": "security-group-id",
    "instance_profile_arn": "instance-profile-arn",
}


@dataclass(frozen=True)
class Infrastructure:
    """What the Compute stack exported to SSM."""

    bucket: str
    spot_template_id: str
    on_demand_template_id: str
    subnet_ids: tuple[str, ...]
    security_group_id: str
    instance_profile_arn: str

    def template_for(self, market: str) -> str:
        return self.spot_template_id if market == "spot" else self.on_demand_template_id


def resolve_infrastructure(ssm, prefix: str = "/trainfleet") -> Infrastructure:
    names = {key: f"{prefix}/{suffix}" for key, suffix in SSM_KEYS.items()}
    response = ssm.get_parameters(Names=list(names.values()))
    found = {p["Name"]: p["Value"] for p in response["Parameters"]}
    missing = [name for name in names.values() if name not in found]
    if missing:
        raise TrainfleetInputError(
            f"trainfleet is not deployed in this account/region (missing SSM parameter {missing[0]}): "
            "run `npx cdk deploy Storage Network Compute` first"
        )
    values = {key: found[name] for key, name in names.items()}
    values["subnet_ids"] = tuple(s for s in values["subnet_ids"].split(",") if s)
    return Infrastructure(**values)


def require_bucket(s3, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        raise TrainfleetInputError(f"bucket {bucket!r} is not reachable ({code or error}); is the Storage stack deployed?") from None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


@dataclass
class LaunchSummary:
    campaign: str
    estimate_worst_usd: float
    estimate_expected_usd: float | None
    spent_usd: float
    launched: list[dict] = field(default_factory=list)
    skipped_complete: list[str] = field(default_factory=list)
    skipped_live: list[str] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)


def price_quotes(ec2, spec: CampaignSpec, catalog: Catalog, *, spot_history: bool = True) -> dict[tuple, PriceQuote]:
    """Quotes keyed by (instance type, market): the matrix's types, and the fallback if there is one."""
    wanted = {(itype, spec.market) for itype in spec.matrix["instance_type"]}
    if spec.fallback:
        wanted |= {(spec.fallback.get("instance_type", itype), spec.fallback.get("market", spec.market))
                   for itype in spec.matrix["instance_type"]}
    return {
        (itype, market): quote(ec2, catalog.get(itype), region=spec.region, market=market,
                               catalog_as_of=catalog.as_of, spot_history=spot_history)
        for itype, market in wanted
    }


def attempt_price(spec: CampaignSpec, run: RunSpec, record: dict, quotes: dict[tuple, PriceQuote]) -> PriceQuote:
    """The first attempt runs as specified; after an interruption the fallback (type and/or market) applies."""
    attempts = record.get("attempts", [])
    if spec.fallback and attempts and attempts[-1].get("outcome") == "interrupted":
        return quotes[(spec.fallback.get("instance_type", run.instance_type), spec.fallback.get("market", spec.market))]
    return quotes[(run.instance_type, spec.market)]


def spent_usd(launch_record: dict) -> float:
    """What a run's finished attempts cost (live attempts are counted at their worst case by the caller)."""
    return sum(a.get("cost_usd") or 0.0 for a in launch_record.get("attempts", []))


def agent_config(spec: CampaignSpec, run: RunSpec, infra: Infrastructure, price: PriceQuote, attempt: int,
                 launched_at: str, catalog: Catalog, instance_type: str | None = None) -> dict:
    instance_type = instance_type or run.instance_type
    peak = catalog.get(instance_type)
    return {
        "campaign": spec.campaign, "run_id": run.run_id, "bucket": infra.bucket, "region": spec.region,
        "workload": spec.workload, "script": spec.script, "args": override_args(run.hyperparameters),
        "hyperparameters": run.hyperparameters, "instance_type": instance_type, "market": price.market,
        "price": price.to_dict(), "attempt": attempt, "launched_at": launched_at,
        "max_runtime_minutes": spec.max_runtime_minutes, "target": spec.target,
        "peak_tflops": {"fp32": peak.peak_fp32_tflops, "fp16": peak.peak_fp16_tflops},
    }


def launch_run(ec2, s3, spec: CampaignSpec, run: RunSpec, infra: Infrastructure, price: PriceQuote,
               catalog: Catalog, *, subnet: str, python: str = "python3") -> dict:
    """Start one attempt of one run and record it in launch.json (before and after RunInstances)."""
    location = run_location(s3, infra.bucket, spec.campaign, run.run_id)
    record = read_json(location, "launch.json") or {"run_id": run.run_id, "label": run.label, "attempts": []}
    attempt = len(record["attempts"]) + 1
    launched_at = now_iso()
    instance_type = price.instance_type  # the run's type, or the fallback type after an interruption
    config = agent_config(spec, run, infra, price, attempt, launched_at, catalog, instance_type=instance_type)
    user_data = build_user_data(Bootstrap(
        repo=spec.repo, ref=spec.ref, bucket=infra.bucket, prefix=run_prefix(spec.campaign, run.run_id),
        max_runtime_minutes=spec.max_runtime_minutes, agent_config=config, python=python,
    ))
    tags = [{"Key": CAMPAIGN_TAG, "Value": spec.campaign}, {"Key": RUN_TAG, "Value": run.run_id},
            {"Key": ATTEMPT_TAG, "Value": str(attempt)}, {"Key": "Name", "Value": f"trainfleet-{run.run_id}"}]
    resource_types = ["instance", "volume"] + (["spot-instances-request"] if price.market == "spot" else [])
    response = ec2.run_instances(
        LaunchTemplate={"LaunchTemplateId": infra.template_for(price.market), "Version": "$Latest"},
        InstanceType=instance_type,
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        UserData=user_data,
        ClientToken=f"{spec.campaign}/{run.run_id}/{attempt}"[:64],
        TagSpecifications=[{"ResourceType": rt, "Tags": tags} for rt in resource_types],
    )
    instance = response["Instances"][0]
    entry = {"attempt": attempt, "instance_id": instance["InstanceId"], "instance_type": instance_type,
             "market": price.market, "price": price.to_dict(), "launched_at": launched_at,
             "subnet": subnet, "cost_usd": None, "outcome": "launched"}
    record["attempts"].append(entry)
    record.update(hyperparameters=run.hyperparameters, instance_type=run.instance_type)
    write_json(location, "launch.json", record)
    return entry


def check_budget(spec: CampaignSpec, *, needed: float, already: float, count: int, noun: str) -> None:
    """Refuse (nothing launched) unless what is spent or committed plus the new worst case fits the budget."""
    if already + needed > spec.budget_usd:
        raise TrainfleetInputError(
            f"budget ${spec.budget_usd:.2f} refused: worst case ${needed:.2f} for {count} {noun} "
            f"(+ ${already:.2f} spent or committed) exceeds it; nothing launched"
        )


def launch_campaign(ec2, s3, spec: CampaignSpec, infra: Infrastructure, *, catalog: Catalog | None = None,
                    python: str = "python3", confirm_estimate=None, spot_history: bool = True) -> LaunchSummary:
    """Price, check the budget, then launch every run that is neither complete nor live."""
    catalog = catalog or load_catalog()
    require_bucket(s3, infra.bucket)
    if not infra.subnet_ids:
        raise TrainfleetInputError("the Network stack exported no subnets")
    quotes = price_quotes(ec2, spec, catalog, spot_history=spot_history)
    plan = estimate(spec, {itype: quotes[(itype, spec.market)] for itype in spec.matrix["instance_type"]})
    live = {tag(i, RUN_TAG): i for i in campaign_instances(ec2, spec.campaign, LIVE_STATES)}
    pending, complete, gave_up, already_spent, prices = [], [], [], 0.0, {}
    for run in spec.runs():
        location = run_location(s3, infra.bucket, spec.campaign, run.run_id)
        record = read_json(location, "launch.json") or {}
        already_spent += spent_usd(record)
        if location.read_bytes("result.json") is not None:
            complete.append(run.run_id)
        elif run.run_id in live:
            continue
        elif len(record.get("attempts", [])) >= spec.max_attempts:
            gave_up.append(run.run_id)
        else:
            pending.append(run)  # never launched, or its last attempt was interrupted / died
            prices[run.run_id] = attempt_price(spec, run, record, quotes)
    # Live runs may still bill up to their worst case; count them, or a re-launch could overshoot.
    committed = sum(plan.per_run[r][1] for r in live if r in plan.per_run)
    needed = sum(prices[r.run_id].cost(spec.max_runtime_minutes * 60) for r in pending)
    summary = LaunchSummary(spec.campaign, plan.worst_case_usd, plan.expected_usd, already_spent,
                            skipped_complete=complete, skipped_live=sorted(r for r in live if r), gave_up=gave_up)
    check_budget(spec, needed=needed, already=already_spent + committed, count=len(pending), noun="runs")
    if confirm_estimate is not None and pending and not confirm_estimate(plan, pending):
        return summary
    record_campaign(s3, infra.bucket, spec, {
        "catalog_as_of": catalog.as_of, "written_at": now_iso(),
        "estimate": {"worst_case_usd": plan.worst_case_usd, "expected_usd": plan.expected_usd, "runs": plan.runs},
        "quotes": {f"{t} {m}": q.to_dict() for (t, m), q in quotes.items()},
    })
    for index, run in enumerate(pending):
        subnet = infra.subnet_ids[index % len(infra.subnet_ids)]
        entry = launch_run(ec2, s3, spec, run, infra, prices[run.run_id], catalog, subnet=subnet, python=python)
        summary.launched.append({"run_id": run.run_id, **entry})
    return summary


@dataclass
class TeardownSummary:
    terminated: list[str]
    cancelled_spot_requests: list[str]


def teardown(ec2, campaign: str) -> TeardownSummary:
    """Terminate every live instance of the campaign and cancel its open spot requests (by tag)."""
    instances = campaign_instances(ec2, campaign, LIVE_STATES)
    ids = [i["InstanceId"] for i in instances]
    requests = ec2.describe_spot_instance_requests(
        Filters=[{"Name": f"tag:{CAMPAIGN_TAG}", "Values": [campaign]},
                 {"Name": "state", "Values": ["open", "active"]}])["SpotInstanceRequests"]
    request_ids = [r["SpotInstanceRequestId"] for r in requests]
    if request_ids:
        ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=request_ids)
    if ids:
        ec2.terminate_instances(InstanceIds=ids)
    return TeardownSummary(terminated=ids, cancelled_spot_requests=request_ids)


def status_rows(ec2, s3, bucket: str, campaign: str, now: datetime | None = None) -> list[dict]:
    """One row per run: state, instance, price, elapsed and cost so far (live attempts billed to now)."""
    from instance_benchmarks.results import load_run_records

    now = now or datetime.now(timezone.utc)
    instances = {i["InstanceId"]: i for i in campaign_instances(ec2, campaign)}
    rows = []
    for record in load_run_records(s3, bucket, campaign):
        attempts = record["launch"].get("attempts", [])
        last = attempts[-1] if attempts else {}
        instance = instances.get(last.get("instance_id"), {})
        state = instance.get("State", {}).get("Name", "unknown")
        cost = spent_usd(record["launch"])
        if last and last.get("cost_usd") is None and state in LIVE_STATES:
            started = datetime.fromisoformat(last["launched_at"])
            cost += cost_usd((now - started).total_seconds(), last["price"]["usd_per_hour"])
        result = record["result"]
        rows.append({
            "run_id": record["run_id"], "label": record["launch"].get("label", ""),
            "status": "complete" if result else (last.get("outcome") or "unknown"),
            "instance_id": last.get("instance_id"), "instance_state": state,
            "instance_type": last.get("instance_type"), "market": last.get("market"),
            "usd_per_hour": last.get("price", {}).get("usd_per_hour"), "attempts": len(attempts),
            "cost_usd": cost,
        })
    return rows
