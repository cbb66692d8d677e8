"""Backend name (the spec's `backend:`) -> backend class. Add a backend here and nowhere else."""
from __future__ import annotations

from instance_benchmarks.backends.base import Backend
from instance_benchmarks.backends.ec2.backend import Ec2Backend
from instance_benchmarks.backends.sagemaker.backend import SageMakerBackend

BACKENDS: dict[str, type[Backend]] = {cls.NAME: cls for cls in (Ec2Backend, SageMakerBackend)}
DEFAULT = Ec2Backend.NAME


def backend_class(name: str) -> type[Backend]:
    return BACKENDS[name]
