"""The Backend interface: what every place a run can execute (EC2, SageMaker) must do.

Modelled on SkyPilot's `sky/backends/backend.py` and dstack's compute base: the runner
(`instance_benchmarks.runner`) owns the budget, `campaign.json`, `launch.json`, fallback, attempts and
the report; a backend only makes cloud calls. Every method returns promptly, is idempotent and finds
resources by the `trainfleet:campaign` / `trainfleet:run` tags, never from local state.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

from instance_benchmarks.catalog import Catalog, InstanceSpec
from instance_benchmarks.catalog.pricing import PriceQuote
from instance_benchmarks.core.contract import ANY_REPO, FALLBACK, MULTI_NODE  # noqa: F401 (re-exported)
from instance_benchmarks.core.errors import TrainfleetInputError

# Capabilities a campaign may ask for (core.contract's FALLBACK, ANY_REPO, MULTI_NODE): the campaign file's parse
# (instance_benchmarks/campaign_file.py) refuses a spec that needs one the backend lacks.


class LaunchRefused(Exception):
    """The cloud would not start this attempt (capacity, quota, price): recorded, nothing billed.

    `kind` tells the runner what may help: "capacity" (no capacity or price now, in any of the stack's
    AZs: the spec's fallback may) or "quota" / "unsupported" / "account" (nothing will until the user acts:
    the launch stops there, and `action` says what to do, e.g. which Service Quotas quota to raise, or the
    account setup that is missing, such as the spot service-linked role)."""

    CAPACITY, QUOTA, UNSUPPORTED, ACCOUNT = "capacity", "quota", "unsupported", "account"

    def __init__(self, code: str, message: str, kind: str = "capacity", action: str = "") -> None:
        super().__init__(f"{code}: {message}" + (f" ({action})" if action else ""))
        self.code, self.kind, self.action = code, kind, action

    @property
    def stops_launch(self) -> bool:
        return self.kind != self.CAPACITY


@dataclass(frozen=True)
class RunState:
    """A live attempt as the cloud sees it."""

    run_id: str
    resource_id: str   # instance id or training job name
    state: str         # the cloud's own word: pending, running, InProgress, Stopping, ...


@dataclass
class TeardownSummary:
    backend: str
    stopped: list[str] = field(default_factory=list)     # instances terminated / jobs stopped
    cancelled: list[str] = field(default_factory=list)   # open spot requests cancelled
    # one entry per attempt it ended, for the runner to record and price (see runner.record_torn_down):
    # {"run_id", "attempt", "key": "instance_id" | "job_name", "resource", "started_at", "ended_at", "ran" (False: not billed)}
    ended: list[dict] = field(default_factory=list)


class Backend(ABC):
    NAME: ClassVar[str]          # the spec's `backend:` value
    RUN_PREFIX: ClassVar[str]    # prefix of its run ids (keeps existing ids valid)
    CAPABILITIES: ClassVar[frozenset[str]]

    def __init__(self, env) -> None:
        self.env = env

    # ------------------------------------------------------------------ spec time (no AWS call)
    @classmethod
    def list_price(cls, instance: InstanceSpec, region: str) -> float:
        """The catalog price this backend charges for the type (raises a one-line input error if none)."""
        return instance.on_demand_price(region)

    @classmethod
    def check_settings(cls, settings: dict | None, spec_data: dict, source: str) -> dict | None:
        """Validate the backend's own section of a campaign file (`<NAME>: {...}`); return it normalised."""
        if settings is not None:
            raise TrainfleetInputError(f"{source}: backend {cls.NAME} takes no {cls.NAME} section")
        return None

    # ------------------------------------------------------------------ cloud calls
    @abstractmethod
    def quote(self, spec, instance: InstanceSpec, market: str, catalog: Catalog) -> PriceQuote:
        """The price of one hour now; launches nothing."""

    @abstractmethod
    def launch(self, spec, run, attempt: int, price: PriceQuote, catalog: Catalog) -> dict:
        """Start one tagged attempt; returns its launch.json entry. Raises LaunchRefused when the cloud
        has no capacity or quota for it (the runner records that and goes on with the other runs)."""

    @abstractmethod
    def live(self, campaign: str) -> dict[str, RunState]:
        """Live attempts of the campaign by run id; never waits."""

    @abstractmethod
    def collect(self, spec: dict, run_id: str, record: dict) -> bool:
        """Bring the run's last attempt into the shared layout (`spec` as recorded in campaign.json):
        settle its outcome and cost in `record` (the run's launch.json, written back by the caller
        when this returns True) and, for a completed one, make sure result.json exists. An attempt
        still `launching` (the launcher died during the call) is adopted if it started, else marked
        `not_launched`. Returns whether `record` changed."""

    @abstractmethod
    def teardown(self, campaign: str) -> TeardownSummary:
        """End every live resource of the campaign; silent when already gone. Lists each attempt it
        ended in `ended`, with the cloud's own start time, so its cost is recorded, never lost."""
