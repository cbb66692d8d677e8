"""`backend: ec2`: each attempt of a run is one spot (or on-demand) instance that runs the trainfleet agent.

The agent (installed on the instance from trainfleet's own wheel) clones the campaign's repository,
runs the script, settles its attempt in launch.json and writes result.json; this backend launches,
finds and ends instances, and settles attempts whose instance ended before its agent could.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from instance_benchmarks.backends.base import ANY_REPO, FALLBACK, Backend, LaunchRefused, RunState, TeardownSummary
from instance_benchmarks.backends.ec2.instances import (
    LIVE_STATES, campaign_instances, ended_at, run_instance, tag, terminate_campaign, vcpu_quota_name,
)
from instance_benchmarks.backends.packaging import build_wheel, publish_wheel
from instance_benchmarks.catalog import Catalog, InstanceSpec, MachineImage, load_catalog
from instance_benchmarks.catalog.pricing import PriceQuote, quote
from instance_benchmarks.core.billing import billed_seconds, cost_usd
from instance_benchmarks.core.bootstrap import AgentBootstrap, build_agent_user_data
from instance_benchmarks.core.contract import ATTEMPT_TAG, RUN_TAG, now_iso
from training_scripts.storage import S3Location


# run_instances errors (EC2 API reference, "Error codes") that say "not here, not now": another subnet
# (AZ) may have the capacity, or offer the type ("Unsupported": not offered in this AZ)...
# UnfulfillableCapacity: "not enough spare capacity ... for Spot Instances ... include additional Availability Zones".
TRY_ANOTHER_AZ = {"InsufficientInstanceCapacity", "InsufficientCapacity", "UnfulfillableCapacity", "Unsupported",
                  "InsufficientFreeAddressesInSubnet"}
# ...these that no subnet changes but the spec's fallback (another type or market) may...
CAPACITY = TRY_ANOTHER_AZ | {"SpotMaxPriceTooLow"}
# ...and account quotas, which only the user can raise (Service Quotas): the launch stops.
QUOTA = {"VcpuLimitExceeded", "MaxSpotInstanceCountExceeded", "InstanceLimitExceeded"}
# The account's own setup, which no retry changes either: the launch stops with what to do.
SPOT_ROLE_FIX = ("create the spot service-linked role once: aws iam create-service-linked-role --aws-service-name "
                 "spot.amazonaws.com, or launch with the Compute stack's launcher policy (it may create it); "
                 "see `trainfleet doctor`")
ACCOUNT = {
    # a spot launch through the API needs AWSServiceRoleForEC2Spot (EC2 User Guide, "Service-linked role for
    # Spot Instance requests"); EC2 creates it only with the caller's iam:CreateServiceLinkedRole
    "AuthFailure.ServiceLinkedRoleCreationNotPermitted": SPOT_ROLE_FIX,
    # a new account, or one in a newly enabled region, until AWS has verified it
    "PendingVerification": "the account is still being verified for this region (minutes to hours for a new "
                           "account); wait, or ask AWS Support",
    "OptInRequired": "the account is not subscribed to EC2 in this region: enable the region (Account settings)",
}


class Ec2Backend(Backend):
    NAME = "ec2"
    RUN_PREFIX = ""
    CAPABILITIES = frozenset({FALLBACK, ANY_REPO})

    def __init__(self, env) -> None:
        super().__init__(env)
        self._wheels: dict[str, tuple] = {}
        self._launches = 0
        self._subnet_zones: dict[str, str] | None = None

    @classmethod
    def list_price(cls, instance: InstanceSpec, region: str) -> float:
        """On-demand price plus the root volume; refuses types with no working image (p3, micro sizes)."""
        catalog = load_catalog()
        image = catalog.image_for(instance.name)
        return instance.on_demand_price(region) + catalog.ebs_usd_per_hour(image.root_volume_gib, region)

    def _zones(self) -> dict[str, str]:
        """subnet id -> AZ of the stack's subnets (spot prices and capacity are per AZ)."""
        if self._subnet_zones is None:
            subnets = self.env.client("ec2").describe_subnets(SubnetIds=list(self.env.infra.subnet_ids))["Subnets"]
            self._subnet_zones = {s["SubnetId"]: s["AvailabilityZone"] for s in subnets}
        return self._subnet_zones

    def quote(self, spec, instance: InstanceSpec, market: str, catalog: Catalog) -> PriceQuote:
        image = catalog.image_for(instance.name)
        gib = self.env.infra.root_volume_gib(image.kind)
        return quote(self.env.client("ec2"), instance, region=spec.region, market=market,
                     spot_history=self.env.spot_history,
                     zones=frozenset(self._zones().values()),
                     storage_usd_per_hour=catalog.ebs_usd_per_hour(gib, spec.region), storage_note=f"{gib} GiB gp3 root")

    def _subnet_order(self, price: PriceQuote) -> list[str]:
        """The subnet in the AZ the spot price was quoted for first, then round robin over the others."""
        subnets, first = list(self.env.infra.subnet_ids), self._launches
        self._launches += 1
        ordered = [subnets[(first + i) % len(subnets)] for i in range(len(subnets))]
        zones = self._zones()
        return sorted(ordered, key=lambda subnet: zones.get(subnet) != price.availability_zone)

    def _wheel(self, campaign: str) -> tuple:
        if campaign not in self._wheels:
            wheel = build_wheel()
            self._wheels[campaign] = (wheel, publish_wheel(self.env.client("s3"), self.env.infra.bucket, campaign, wheel))
        return self._wheels[campaign]

    def agent_config(self, spec, run, attempt: int, price: PriceQuote, catalog: Catalog, launched_at: str,
                     image: MachineImage) -> dict:
        instance = catalog.get(price.instance_type)
        return {
            "campaign": spec.campaign, "run_id": run.run_id, "attempt": attempt, "launched_at": launched_at,
            "bucket": self.env.infra.bucket, "region": spec.region, "task": spec.task_dict(run),
            "hyperparameters": run.hyperparameters, "instance_type": price.instance_type, "market": price.market,
            "price": price.to_dict(), "max_runtime_minutes": spec.max_runtime_minutes, "target": spec.target,
            "peak_tflops": instance.peaks(),
            "gpu_count": instance.gpu_count, "pip_extra_index_url": image.pip_extra_index_url,
        }

    def launch(self, spec, run, attempt: int, price: PriceQuote, catalog: Catalog) -> dict:
        infra = self.env.infra
        instance_spec, image = catalog.get(price.instance_type), catalog.image_for(price.instance_type)
        wheel, key = self._wheel(spec.campaign)
        launched_at = now_iso()
        config = self.agent_config(spec, run, attempt, price, catalog, launched_at, image)
        bootstrap = AgentBootstrap(
            max_runtime_minutes=spec.max_runtime_minutes, region=spec.region, bucket=infra.bucket, wheel_key=key,
            wheel_sha256=wheel.sha256, agent_config=config)  # python3: the DLAMI's PyTorch venv once activated
        # the task (setup and run up to 20,000 characters each) goes to S3, the user data only names it: EC2
        # takes 16 KB of user data at most
        S3Location(infra.bucket, "", self.env.client("s3")).write_bytes(bootstrap.config_key, bootstrap.config_bytes)
        user_data = build_agent_user_data(bootstrap)
        instance, subnet = self._run_in_some_az(spec, run, attempt, price, instance_spec, image.kind, user_data)
        return {"attempt": attempt, "backend": self.NAME, "instance_id": instance["InstanceId"],
                "resource": instance["InstanceId"],
                "instance_type": price.instance_type, "market": price.market, "price": price.to_dict(),
                "launched_at": launched_at, "subnet": subnet, "image": image.name, "cost_usd": None,
                "outcome": "launched", "agent_wheel": {"key": key, "sha256": wheel.sha256}}

    def _run_in_some_az(self, spec, run, attempt: int, price: PriceQuote, instance_spec: InstanceSpec,
                        image: str, user_data: str) -> tuple[dict, str]:
        """run_instances in the stack's subnets until one AZ has capacity; quota errors stop at once."""
        ec2, errors = self.env.client("ec2"), []
        for subnet in self._subnet_order(price):
            try:
                return run_instance(ec2, campaign=spec.campaign, run_id=run.run_id, attempt=attempt,
                                    instance_type=price.instance_type, market=price.market,
                                    template_id=self.env.infra.template_for(price.market, image), subnet=subnet,
                                    user_data=user_data, burstable=instance_spec.burstable), subnet
            except ec2.exceptions.ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                message = error.response.get("Error", {}).get("Message", "")
                if code in QUOTA:
                    raise LaunchRefused(code, message, LaunchRefused.QUOTA,
                                        f"raise '{vcpu_quota_name(price.instance_type, price.market)}' in Service "
                                        f"Quotas for {spec.region}") from None
                if code in ACCOUNT:
                    raise LaunchRefused(code, message, LaunchRefused.ACCOUNT, ACCOUNT[code]) from None
                if code not in CAPACITY:
                    raise
                errors.append((code, message, self._zones().get(subnet, subnet)))
                if code not in TRY_ANOTHER_AZ:  # a price too low is too low in every AZ
                    break
        zones = ", ".join(sorted({zone for _, _, zone in errors}))
        code, message, _ = errors[-1]
        if all(c == "Unsupported" for c, _, _ in errors):
            raise LaunchRefused(code, message, LaunchRefused.UNSUPPORTED,
                                f"{price.instance_type} is not offered in the stack's AZs ({zones}): choose another "
                                "type, or deploy the Network stack in other AZs")
        raise LaunchRefused(code, f"{message} (tried {zones})")

    def live(self, campaign: str) -> dict[str, RunState]:
        found: dict[str, tuple[int, RunState]] = {}
        for instance in campaign_instances(self.env.client("ec2"), campaign, LIVE_STATES):
            run_id, attempt = tag(instance, RUN_TAG), int(tag(instance, ATTEMPT_TAG) or 0)
            if run_id and (run_id not in found or attempt > found[run_id][0]):
                found[run_id] = (attempt, RunState(run_id, instance["InstanceId"], instance["State"]["Name"]))
        return {run_id: state for run_id, (_, state) in found.items()}

    def collect(self, spec: dict, run_id: str, record: dict) -> bool:
        """The agent settles its own attempt; settle one whose instance ended first (spot reclaim,
        watchdog, teardown, a failed bootstrap), billed from launch to the instance's end."""
        last = (record.get("attempts") or [{}])[-1]
        ec2 = self.env.client("ec2")
        adopted = False
        if last.get("outcome") == "launching":  # the launcher died around run_instances: did it start?
            started = [i for i in campaign_instances(ec2, spec["campaign"])
                       if tag(i, RUN_TAG) == run_id and tag(i, ATTEMPT_TAG) == str(last["attempt"])]
            if not started:
                last.update(outcome="not_launched", cost_usd=0.0)
                return True
            last.update(instance_id=started[0]["InstanceId"], resource=started[0]["InstanceId"], outcome="launched",
                        subnet=started[0].get("SubnetId"))
            adopted = True
        if last.get("outcome") != "launched" or not last.get("instance_id"):
            return False
        try:
            reservations = ec2.describe_instances(InstanceIds=[last["instance_id"]])["Reservations"]
        except ec2.exceptions.ClientError as error:  # terminated instances vanish after about an hour
            if error.response.get("Error", {}).get("Code") != "InvalidInstanceID.NotFound":
                raise
            reservations = []
        instance = reservations[0]["Instances"][0] if reservations else {}
        if instance.get("State", {}).get("Name") in LIVE_STATES:
            return adopted
        # billed from EC2's own launch time when it still knows the instance, else from the launcher's clock
        started = instance.get("LaunchTime") or datetime.fromisoformat(last["launched_at"])
        now = datetime.now(timezone.utc)
        watchdog = started + timedelta(minutes=spec["max_runtime_minutes"]) if spec.get("max_runtime_minutes") else now
        end = ended_at(instance) or min(now, watchdog)  # EC2 forgets terminated instances after about an hour
        seconds = max(0.0, (end - started).total_seconds())
        reclaimed = instance.get("StateReason", {}).get("Code") == "Server.SpotInstanceTermination"
        last.update(outcome="interrupted" if reclaimed else "lost", ended_at=end.isoformat(timespec="seconds"),
                    run_seconds=round(seconds, 3), billed_seconds=billed_seconds(seconds),
                    cost_usd=cost_usd(seconds, last["price"]["usd_per_hour"]),
                    note="spot capacity reclaimed before the agent reported" if reclaimed else
                    "the instance ended before its agent recorded an outcome (watchdog, teardown or a failed "
                    "bootstrap: see logs/attempt-N/bootstrap.log)")
        return True

    def teardown(self, campaign: str) -> TeardownSummary:
        """Terminate the campaign's instances (by tag); each ended attempt is billed from when it began to
        bill (the environment's `started_at`: EC2's launch time) to the terminate call, an instance that never
        ran not at all."""
        ec2 = self.env.client("ec2")
        found = {i["InstanceId"]: i for i in campaign_instances(ec2, campaign, LIVE_STATES)}
        stopped, cancelled = terminate_campaign(ec2, campaign)
        ended_now = now_iso()
        ended = []
        for instance_id in stopped:
            instance = found.get(instance_id)
            if instance is None or not tag(instance, RUN_TAG):
                continue
            started = self.env.started_at(instance)
            ended.append({"run_id": tag(instance, RUN_TAG), "attempt": int(tag(instance, ATTEMPT_TAG) or 0) or None,
                          "key": "instance_id", "resource": instance_id, "ended_at": ended_now,
                          "started_at": started.isoformat(timespec="seconds") if started else None,
                          "ran": started is not None})
        return TeardownSummary(self.NAME, stopped, cancelled, ended)
