"""Where a campaign's AWS calls go: AWS itself, or the embedded default (see `embedded/`).

The environment swaps the endpoint, not the code: every backend makes the same boto3 calls either way.
What differs is only what moto cannot do (boot instances, run training jobs, publish spot prices),
which the embedded environment supplies in `advance`.
"""
from __future__ import annotations

import contextlib
import time
from functools import cached_property

import boto3
from botocore.config import Config

from instance_benchmarks.backends.infrastructure import Infrastructure, resolve_infrastructure
from instance_benchmarks.backends.registry import backend_class
from instance_benchmarks.core.contract import SSM_PREFIX
from instance_benchmarks.core.validation import require_remote_repo
from instance_benchmarks.doctor import StandIns

# botocore's standard retry mode: exponential backoff with jitter on throttling and transient errors.
RETRIES = Config(retries={"mode": "standard", "max_attempts": 8})


class Environment:
    """AWS: clients from the user's configuration, spot prices from EC2, polling by sleeping."""

    spot_history = True          # quote spot prices from describe_spot_price_history
    poll_seconds = 30.0

    def __init__(self, region: str | None = None, ssm_prefix: str = SSM_PREFIX) -> None:
        self.region, self.ssm_prefix = region, ssm_prefix
        self._clients: dict[str, object] = {}
        self._backends: dict[str, object] = {}

    def session(self):
        return boto3.Session(region_name=self.region)

    def client(self, service: str):
        if service not in self._clients:
            self._clients[service] = self.session().client(service, config=RETRIES)
        return self._clients[service]

    def backend(self, name: str):
        """The backend called `name` (the spec's `backend:`), bound to this environment."""
        if name not in self._backends:
            self._backends[name] = backend_class(name)(self)
        return self._backends[name]

    def for_region(self, region: str) -> "Environment":
        """The same configuration with its calls going to `region` (where a campaign was launched)."""
        return Environment(region, self.ssm_prefix)

    @cached_property
    def infra(self) -> Infrastructure:
        return resolve_infrastructure(self.client("ssm"), self.ssm_prefix)

    def advance(self, campaign: str) -> None:
        """Let time pass while instances and jobs run (the embedded default runs them here instead)."""
        time.sleep(self.poll_seconds)

    def started_at(self, instance: dict):
        """When an instance began to bill, or None if it never ran: EC2 bills from the running state, so an
        instance still `pending` when it is ended costs nothing; otherwise from its LaunchTime."""
        return None if instance.get("State", {}).get("Name") == "pending" else instance.get("LaunchTime")

    def default_role(self, principal: str) -> str | None:
        """An execution role for `principal` when the campaign names none (AWS: none; the user must)."""
        return None

    def sdk_context(self):
        """Where an SDK that builds its own clients (SageMaker's) must run: as configured, on AWS."""
        return contextlib.nullcontext()

    def doctor_clients(self):
        """`trainfleet doctor`'s clients and the checks this environment answers itself: on AWS, every check
        reads AWS."""
        return self.client, StandIns()

    def check_repo(self, repo: str) -> None:
        """Instances clone over the internet: only https repositories (see core.validation)."""
        require_remote_repo(repo)
