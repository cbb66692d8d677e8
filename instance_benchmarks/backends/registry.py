"""Backend name (the spec's `backend:`) -> backend class. Consulted by the runner, the CLI and the campaign file's parse
(instance_benchmarks/campaign_file.py) only; DEFAULT is core.contract.DEFAULT_BACKEND.

A backend is added in its own folder (`backends/<name>/`, importing only core, catalog, measure, campaigns'
neutral parts, `backends.base` and `backends.packaging`) and named here, in BACKENDS, or with `register` (what
tests/instance_benchmarks/backends/test_third_backend.py does with a fake one).
"""
from __future__ import annotations

from instance_benchmarks.backends.base import Backend
from instance_benchmarks.backends.ec2.backend import Ec2Backend
from instance_benchmarks.backends.sagemaker.backend import SageMakerBackend

BACKENDS: dict[str, type[Backend]] = {cls.NAME: cls for cls in (Ec2Backend, SageMakerBackend)}
DEFAULT = Ec2Backend.NAME


def backend_class(name: str) -> type[Backend]:
    return BACKENDS[name]


def register(cls: type[Backend]) -> type[Backend]:
    """Add a backend (also as a class decorator). Its NAME and RUN_PREFIX must be new: run ids name the
    backend by their prefix, so two backends may never share one."""
    taken = {other.RUN_PREFIX: name for name, other in BACKENDS.items()}
    if cls.NAME in BACKENDS:
        raise ValueError(f"backend {cls.NAME!r} is already registered ({BACKENDS[cls.NAME].__name__})")
    if cls.RUN_PREFIX in taken:
        raise ValueError(f"backend {cls.NAME!r}: run prefix {cls.RUN_PREFIX!r} is already backend {taken[cls.RUN_PREFIX]!r}'s")
    BACKENDS[cls.NAME] = cls
    return cls
