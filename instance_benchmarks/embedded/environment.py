"""The embedded default as an Environment: the same backends and runner, with moto's server as AWS.

Clients point at moto's server on 127.0.0.1; `advance` does what moto cannot: it asks each backend's
stand-in (`stand_ins.STAND_INS`) to run what the campaign has running there - its instances
(`worker.LocalWorker`, executing their real user data), its SageMaker jobs (`sagemaker_executor`). The
stand-ins tell each run where it really executes as host facts (measure.record.HOST_FILE), as data. Spot prices are not read (moto's spot history holds placeholders), so spot
runs are priced at the catalog's on-demand ceiling. With a `LocalState` (`state.py`; the CLI's `--local`
commands pass one) the bucket is restored from it at start and saved into it as results land and at close.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import boto3

from instance_benchmarks.embedded.cloud import LocalCloud, start_local_cloud
from instance_benchmarks.embedded.doctor import stand_in_clients
from instance_benchmarks.embedded.moto_server import LOCAL_CREDENTIALS
from instance_benchmarks.embedded.stand_ins import STAND_INS, StandIn
from instance_benchmarks.embedded.state import LocalState
from instance_benchmarks.embedded.worker import LocalWorker, local_host_label
from instance_benchmarks.environment import Environment


@dataclass(frozen=True)
class HostInfo:
    """This machine, where the stand-ins run what is priced as another instance type."""

    label: str
    peak_tflops: float
    peak_source: str


def local_peak_tflops() -> tuple[float, str]:
    """Rough FP32 peak of this CPU: physical cores x clock x FLOPs/cycle from /proc/cpuinfo flags."""
    flags, mhz, siblings, cores = set(), [], None, None
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "flags":
                    flags = set(value.split())
                elif key == "cpu MHz":
                    mhz.append(float(value))
                elif key == "siblings":
                    siblings = int(value)
                elif key == "cpu cores":
                    cores = int(value)
    except OSError:
        pass
    threads_per_core = (siblings // cores) if siblings and cores else 1
    physical = max(1, (os.cpu_count() or 1) // max(1, threads_per_core))
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 8
    ghz = (max(mhz) if mhz else 2000.0) / 1000
    return physical * ghz * per_cycle / 1000, f"estimated: {physical} cores x {ghz:.2f} GHz x {per_cycle} FLOP/cycle"


class EmbeddedEnvironment(Environment):
    spot_history = False
    poll_seconds = 0.0

    def __init__(self, cloud: LocalCloud, *, worker_env: dict | None = None, log=print,
                 state: LocalState | None = None) -> None:
        super().__init__(cloud.server.region)
        self.cloud, self.log, self.state = cloud, log, state
        self.host = HostInfo(local_host_label(), *local_peak_tflops())
        self.worker = LocalWorker(cloud, host=self.host, extra_env=worker_env, log=log,
                                  on_progress=self.save if state is not None and state.writable else None)
        self._roles: dict[str, str] = {}
        self.stand_ins: dict[str, StandIn] = {}

    def started_at(self, instance: dict):
        """Instances boot here one at a time: billed from their boot, never while queued (see worker.py)."""
        booted = self.worker.booted.get(instance["InstanceId"])
        return datetime.fromisoformat(booted) if booted else None

    @classmethod
    def start(cls, region: str = "us-east-1", *, state: LocalState | None = None, **kwargs) -> "EmbeddedEnvironment":
        """moto's server with the stacks deployed; with `state`, locked first (a busy state starts nothing),
        then its saved objects restored into the bucket."""
        if state is not None:
            state.open()
        try:
            env = cls(start_local_cloud(region=region), state=state, **kwargs)
        except BaseException:
            if state is not None:
                state.close()
            raise
        if state is not None:
            try:
                restored = state.restore(env.client("s3"), env.infra.bucket)
            except BaseException:
                env.close(save=False)
                raise
            if restored:
                env.log(f"restored {restored} object(s) of earlier --local commands from {state.root}")
        return env

    def save(self) -> None:
        """Save the bucket into the local state (if any, and writable)."""
        if self.state is not None and self.state.writable:
            self.state.save(self.client("s3"), self.infra.bucket)

    def close(self, *, save: bool = True) -> None:
        """Save the state, then stop the server and the workers; the server stops even if saving fails."""
        try:
            if save:
                self.save()
        finally:
            self.cloud.server.stop()
            self.worker.cleanup()
            if self.state is not None:
                self.state.close()

    def __enter__(self) -> "EmbeddedEnvironment":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def session(self):
        return boto3.Session(region_name=self.region, aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                             aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                             aws_session_token=LOCAL_CREDENTIALS["AWS_SESSION_TOKEN"])

    def client(self, service: str):
        if service not in self._clients:
            self._clients[service] = self.cloud.client(service)
        return self._clients[service]

    def for_region(self, region: str) -> "EmbeddedEnvironment":
        """One moto server, one region: a campaign recorded under another region is still here."""
        return self

    def doctor_clients(self):
        """moto's clients, with stand-ins for what moto lacks (embedded/doctor.py)."""
        return stand_in_clients(self.client)

    def check_repo(self, repo: str) -> None:
        """Local repositories (file://) are cloned here as an instance would clone an https URL."""

    def default_role(self, principal: str) -> str:
        if principal not in self._roles:
            name = "trainfleet-" + principal.split(".")[0]
            self._roles[principal] = self.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                        "Principal": {"Service": principal}}]}))["Role"]["Arn"]
        return self._roles[principal]

    @contextmanager
    def sdk_context(self):
        """The SageMaker SDK builds its own clients from the process environment: point it at moto."""
        saved = {k: os.environ.get(k) for k in (*self.cloud.server.env, "SAGEMAKER_VALIDATE_ROLE")}
        os.environ.update(self.cloud.server.env, SAGEMAKER_VALIDATE_ROLE="false")
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def advance(self, campaign: str) -> None:
        """Run what AWS would be running: each backend's stand-in in turn (instances, then training jobs)."""
        self.save()  # what the runner wrote since (campaign.json, launch.json): a kill now loses nothing
        for name, stand_in in STAND_INS.items():
            if name not in self.stand_ins:
                self.stand_ins[name] = stand_in(self)
            self.stand_ins[name].advance(campaign)
