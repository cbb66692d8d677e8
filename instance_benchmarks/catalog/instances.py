"""The dated instance/price catalog (what EC2 offers and what it costs on demand).

The catalog is data (`data/catalog.json`), written by `update_catalog.py`; this module only reads it.
Spot prices are not in the catalog: they are read at launch time (see `pricing.py`).
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping

from instance_benchmarks.core.errors import TrainfleetInputError

CATALOG_PATH = Path(__file__).parent / "data" / "catalog.json"


@dataclass(frozen=True)
class InstanceSpec:
    """Where a run executes: one EC2 instance type with its hardware and on-demand prices."""

    name: str
    vcpus: int
    memory_gib: float
    gpu_model: str | None
    gpu_count: int
    gpu_memory_gib: float
    peak_fp32_tflops: float
    peak_fp16_tflops: float
    on_demand_usd_per_hour: Mapping[str, float] = field(default_factory=dict)
    sagemaker_usd_per_hour: Mapping[str, float] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def is_gpu(self) -> bool:
        return self.gpu_count > 0

    def on_demand_price(self, region: str) -> float:
        try:
            return self.on_demand_usd_per_hour[region]
        except KeyError:
            known = ", ".join(sorted(self.on_demand_usd_per_hour))
            raise TrainfleetInputError(
                f"no on-demand price for {self.name} in region {region!r} (catalog has: {known})"
            ) from None

    def sagemaker_price(self, region: str) -> float:
        """SageMaker training price of ml.<type>; a clear error where SageMaker training does not offer it."""
        try:
            return self.sagemaker_usd_per_hour[region]
        except KeyError:
            raise TrainfleetInputError(
                f"{self.name}: no SageMaker training price for ml.{self.name} in {region!r} in the catalog"
            ) from None

    def peak_tflops(self, precision: str = "fp32") -> float:
        return self.peak_fp16_tflops if precision in ("fp16", "bf16") else self.peak_fp32_tflops


@dataclass(frozen=True)
class Catalog:
    as_of: str
    source: str
    instances: Mapping[str, InstanceSpec]

    @property
    def regions(self) -> set[str]:
        return {r for spec in self.instances.values() for r in spec.on_demand_usd_per_hour}

    def get(self, instance_type: str) -> InstanceSpec:
        """The spec of `instance_type`, or a one-line error naming the closest known types."""
        spec = self.instances.get(instance_type)
        if spec is None:
            close = difflib.get_close_matches(str(instance_type), list(self.instances), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise TrainfleetInputError(
                f"unknown instance type {instance_type!r}: not in the catalog dated {self.as_of}{hint}"
            )
        return spec

    def require_region(self, region: str) -> str:
        if region not in self.regions:
            raise TrainfleetInputError(
                f"unknown region {region!r}: catalog has prices for {', '.join(sorted(self.regions))}"
            )
        return region


def parse_catalog(data: Mapping) -> Catalog:
    instances = {
        name: InstanceSpec(name=name, **{k: v for k, v in fields.items()})
        for name, fields in data["instances"].items()
    }
    return Catalog(as_of=data["as_of"], source=data.get("source", ""), instances=instances)


@lru_cache(maxsize=4)
def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    return parse_catalog(json.loads(Path(path).read_text()))
