"""`backend: ec2`: each attempt of a run is one spot (or on-demand) instance that runs the trainfleet agent.

The agent (installed on the instance from trainfleet's own wheel) clones the campaign's repository,
runs the script, settles its attempt in launch.json and writes result.json; this backend launches,
finds and ends instances, and settles attempts whose instance ended before its agent could.
"""
from __future__ import annotations

from datetime import datetime, timezone

from instance_benchmarks.backends.base import ANY_REPO, FALLBACK, Backend, RunState, TeardownSummary
from instance_benchmarks.backends.ec2.instances import (
    LIVE_STATES, campaign_instances, ended_at, run_instance, tag, terminate_campaign,
)
from instance_benchmarks.backends.ec2.wheel import build_wheel, publish_wheel
from instance_benchmarks.catalog import Catalog, InstanceSpec
from instance_benchmarks.catalog.pricing import PriceQuote, billed_seconds, cost_usd, quote
from instance_benchmarks.core.bootstrap import AgentBootstrap, build_agent_user_data
from instance_benchmarks.core.contract import ATTEMPT_TAG, RUN_TAG


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Ec2Backend(Backend):
    NAME = "ec2"
    RUN_PREFIX = ""
    CAPABILITIES = frozenset({FALLBACK, ANY_REPO})

    def __init__(self, env) -> None:
        super().__init__(env)
        self._wheels: dict[str, tuple] = {}
        self._launches = 0

    def quote(self, spec, instance: InstanceSpec, market: str, catalog: Catalog) -> PriceQuote:
        return quote(self.env.client("ec2"), instance, region=spec.region, market=market,
                     catalog_as_of=catalog.as_of, spot_history=self.env.spot_history)

    def _wheel(self, campaign: str) -> tuple:
        if campaign not in self._wheels:
            wheel = build_wheel()
            key, url = publish_wheel(self.env.client("s3"), self.env.infra.bucket, campaign, wheel)
            self._wheels[campaign] = (wheel, key, url)
        return self._wheels[campaign]

    def agent_config(self, spec, run, attempt: int, price: PriceQuote, catalog: Catalog, launched_at: str) -> dict:
        instance = catalog.get(price.instance_type)
        return {
            "campaign": spec.campaign, "run_id": run.run_id, "attempt": attempt, "launched_at": launched_at,
            "bucket": self.env.infra.bucket, "region": spec.region, "task": spec.task_dict(run),
            "hyperparameters": run.hyperparameters, "instance_type": price.instance_type, "market": price.market,
            "price": price.to_dict(), "max_runtime_minutes": spec.max_runtime_minutes, "target": spec.target,
            "peak_tflops": {"fp32": instance.peak_fp32_tflops, "fp16": instance.peak_fp16_tflops},
        }

    def launch(self, spec, run, attempt: int, price: PriceQuote, catalog: Catalog) -> dict:
        infra = self.env.infra
        wheel, key, url = self._wheel(spec.campaign)
        launched_at = now_iso()
        config = self.agent_config(spec, run, attempt, price, catalog, launched_at)
        user_data = build_agent_user_data(AgentBootstrap(
            max_runtime_minutes=spec.max_runtime_minutes, wheel_url=url, wheel_name=wheel.name,
            wheel_sha256=wheel.sha256, agent_config=config))
        subnet = infra.subnet_ids[self._launches % len(infra.subnet_ids)]
        self._launches += 1
        instance = run_instance(self.env.client("ec2"), campaign=spec.campaign, run_id=run.run_id, attempt=attempt,
                                instance_type=price.instance_type, market=price.market,
                                template_id=infra.template_for(price.market), subnet=subnet, user_data=user_data)
        return {"attempt": attempt, "backend": self.NAME, "instance_id": instance["InstanceId"],
                "instance_type": price.instance_type, "market": price.market, "price": price.to_dict(),
                "launched_at": launched_at, "subnet": subnet, "cost_usd": None, "outcome": "launched",
                "agent_wheel": {"key": key, "sha256": wheel.sha256}}

    def live(self, campaign: str) -> dict[str, RunState]:
        found: dict[str, tuple[int, RunState]] = {}
        for instance in campaign_instances(self.env.client("ec2"), campaign, LIVE_STATES):
            run_id, attempt = tag(instance, RUN_TAG), int(tag(instance, ATTEMPT_TAG) or 0)
            if run_id and (run_id not in found or attempt > found[run_id][0]):
                found[run_id] = (attempt, RunState(run_id, instance["InstanceId"], instance["State"]["Name"]))
        return {run_id: state for run_id, (_, state) in found.items()}

    def collect(self, spec: dict, run_id: str, record: dict) -> bool:
        """The agent settles its own attempt; settle one whose instance ended first (watchdog, teardown,
        a failed bootstrap), billed from launch to the instance's end."""
        last = (record.get("attempts") or [{}])[-1]
        if last.get("outcome") != "launched" or not last.get("instance_id"):
            return False
        reservations = self.env.client("ec2").describe_instances(InstanceIds=[last["instance_id"]])["Reservations"]
        instance = reservations[0]["Instances"][0] if reservations else {}
        if instance.get("State", {}).get("Name") in LIVE_STATES:
            return False
        end = ended_at(instance) or datetime.now(timezone.utc)
        seconds = max(0.0, (end - datetime.fromisoformat(last["launched_at"])).total_seconds())
        last.update(outcome="lost", ended_at=end.isoformat(timespec="seconds"), instance_seconds=round(seconds, 3),
                    billed_seconds=billed_seconds(seconds), cost_usd=cost_usd(seconds, last["price"]["usd_per_hour"]),
                    note="the instance ended before its agent recorded an outcome (watchdog, teardown or a "
                         "failed bootstrap: see logs/bootstrap.log)")
        return True

    def teardown(self, campaign: str) -> TeardownSummary:
        stopped, cancelled = terminate_campaign(self.env.client("ec2"), campaign)
        return TeardownSummary(self.NAME, stopped, cancelled)
