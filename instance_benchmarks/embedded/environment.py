"""The embedded default as an Environment: the same backends and runner, with moto's server as AWS.

Clients point at moto's server on 127.0.0.1; `advance` does what moto cannot: it runs the campaign's
instances (`worker.LocalWorker`, executing their real user data) and its SageMaker jobs
(`sagemaker_executor`). Spot prices are not read (moto's spot history holds placeholders), so spot
runs are priced at the catalog's on-demand ceiling.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager

from instance_benchmarks.embedded.cloud import LocalCloud, start_local_cloud
from instance_benchmarks.embedded.moto_server import LOCAL_CREDENTIALS
from instance_benchmarks.embedded.worker import LocalWorker, local_host_label
from instance_benchmarks.environment import Environment, HostInfo


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

    def __init__(self, cloud: LocalCloud, *, worker_env: dict | None = None, log=print) -> None:
        super().__init__(cloud.server.region)
        self.cloud, self.log = cloud, log
        self.host = HostInfo(local_host_label(), *local_peak_tflops())
        self.worker = LocalWorker(cloud, host=self.host, extra_env=worker_env, log=log)
        self._roles: dict[str, str] = {}
        self._ran_jobs: set[str] = set()

    @classmethod
    def start(cls, region: str = "us-east-1", **kwargs) -> "EmbeddedEnvironment":
        return cls(start_local_cloud(region=region), **kwargs)

    def close(self) -> None:
        self.cloud.server.stop()
        self.worker.cleanup()

    def __enter__(self) -> "EmbeddedEnvironment":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def session(self):
        import boto3

        return boto3.Session(region_name=self.region, aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                             aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                             aws_session_token=LOCAL_CREDENTIALS["AWS_SESSION_TOKEN"])

    def client(self, service: str):
        if service not in self._clients:
            self._clients[service] = self.cloud.client(service)
        return self._clients[service]

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
        """Run what AWS would be running: the campaign's instances, then its training jobs."""
        from instance_benchmarks.backends.sagemaker.backend import SageMakerBackend
        from instance_benchmarks.embedded.sagemaker_executor import LocalSageMakerExecutor

        self.worker.drain(campaign)
        # moto marks a training job Completed the moment it is created, without running it
        jobs = [name for name in self.backend(SageMakerBackend.NAME).campaign_jobs(campaign, ("InProgress", "Completed"))
                if name not in self._ran_jobs]
        if jobs:
            executor = LocalSageMakerExecutor(self.client("sagemaker"), self.client("s3"), self.cloud.server.env,
                                              host=self.host, log=self.log)
            for name in sorted(jobs):
                self._ran_jobs.add(name)
                executor.run_job(name)
