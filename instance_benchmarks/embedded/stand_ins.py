"""What stands in for each backend's compute on the embedded default, behind one interface.

moto records instances and training jobs but runs neither; each backend's stand-in runs what AWS would be
running for a campaign when the environment's `advance` asks it (`StandIn.advance`). A backend is given
a stand-in here, under its name (its `NAME`, the spec's `backend:`), and nowhere else.
"""
from __future__ import annotations

from typing import Callable, Protocol

from instance_benchmarks.embedded.sagemaker_executor import LocalSageMakerExecutor
from instance_benchmarks.embedded.worker import LocalWorker


class StandIn(Protocol):
    def advance(self, campaign: str) -> None:
        """Run, to its end, what the campaign has running on this backend and has not been run yet."""


class InstanceStandIn:
    """EC2: each running instance's real user data, one instance at a time (worker.LocalWorker)."""

    def __init__(self, env) -> None:
        self.worker: LocalWorker = env.worker

    def advance(self, campaign: str) -> None:
        self.worker.drain(campaign)


class TrainingJobStandIn:
    """SageMaker: each training job moto accepted (it marks one Completed the moment it is created, without
    running it), run once by the local executor (sagemaker_executor.LocalSageMakerExecutor)."""

    BACKEND = "sagemaker"

    def __init__(self, env) -> None:
        self.env = env
        self.ran: set[str] = set()

    def advance(self, campaign: str) -> None:
        backend = self.env.backend(self.BACKEND)
        jobs = [name for name in backend.campaign_jobs(campaign, ("InProgress", "Completed")) if name not in self.ran]
        if not jobs:
            return
        executor = LocalSageMakerExecutor(self.env.client("sagemaker"), self.env.client("s3"),
                                          self.env.cloud.server.env, host=self.env.host, log=self.env.log,
                                          own_pids=(self.env.cloud.server.pid,))
        for name in sorted(jobs):
            self.ran.add(name)
            executor.run_job(name)
            self.env.save()


# backend name -> its stand-in, built once per environment; asked in this order
STAND_INS: dict[str, Callable[[object], StandIn]] = {"ec2": InstanceStandIn, "sagemaker": TrainingJobStandIn}
