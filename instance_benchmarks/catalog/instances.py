"""The dated instance/price catalog (what EC2 offers and what it costs on demand).

The catalog is data (`data/catalog.json`), written by `update.py` (`python -m instance_benchmarks.catalog.update`); this module only reads it.
Spot prices are not in the catalog: they are read at launch time (see `pricing.py`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping

from instance_benchmarks.core.errors import TrainfleetInputError, did_you_mean

CATALOG_PATH = Path(__file__).parent / "data" / "catalog.json"
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")  # the precisions a run records (training_scripts.loop.run_precision)


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
    # region -> the date each price above was established (the catalog mixes dates: each price keeps its own)
    on_demand_as_of: Mapping[str, str] = field(default_factory=dict)
    sagemaker_as_of: Mapping[str, str] = field(default_factory=dict)
    price_source: str | None = None  # where hand-entered prices come from, when not the Pricing API
    image: str | None = None      # the machine image kind it boots on EC2 (catalog `images`); None: refused
    refused: str | None = None    # why trainfleet will not launch it on EC2 (no working image, too little memory)
    burstable: bool = False       # T family: launched in standard credit mode (no surplus-credit charges)
    gpu_peaks: Mapping[str, float | None] = field(default_factory=dict)  # per-GPU dense TFLOP/s (catalog `gpu_peaks`)

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

    def on_demand_date(self, region: str) -> str:
        """The date of the on-demand price in `region` (a one-line error where there is no price)."""
        self.on_demand_price(region)
        return self.on_demand_as_of[region]

    def sagemaker_date(self, region: str) -> str:
        self.sagemaker_price(region)
        return self.sagemaker_as_of[region]

    def sagemaker_price(self, region: str) -> float:
        """SageMaker training price of ml.<type>; a clear error where SageMaker training does not offer it."""
        try:
            return self.sagemaker_usd_per_hour[region]
        except KeyError:
            raise TrainfleetInputError(
                f"{self.name}: no SageMaker training price for ml.{self.name} in {region!r} in the catalog"
            ) from None

    def require_launchable(self) -> "InstanceSpec":
        """The spec, or a one-line error saying why trainfleet does not launch this type on EC2."""
        if self.refused:
            raise TrainfleetInputError(f"{self.name} cannot run trainfleet on EC2: {self.refused}")
        return self

    def peak_tflops(self, precision: str = "fp32") -> float | None:
        """Dense peak TFLOP/s of the whole type at `precision` (fp32 / tf32 / bf16 / fp16): for a GPU type its
        model's figure in the catalog's `gpu_peaks` x gpu_count, None where the GPU has no such tensor cores
        (a T4's tf32 or bf16); for a CPU type its fp32 figure (none for tf32)."""
        return self.peaks().get(precision)

    def peaks(self) -> dict[str, float | None]:
        """Every precision's dense peak (TFLOP/s over the type's GPUs), as runs receive them for MFU."""
        if self.is_gpu and self.gpu_peaks:
            return {p: (round(self.gpu_peaks[p] * self.gpu_count, 3) if self.gpu_peaks.get(p) else None)
                    for p in PRECISIONS}
        return {"fp32": self.peak_fp32_tflops, "tf32": None,  # never the fp32 figure in its place
                "fp16": self.peak_fp16_tflops, "bf16": self.peak_fp16_tflops}


@dataclass(frozen=True)
class MachineImage:
    """An AMI line an instance boots (by SSM public parameter, resolved by CloudFormation at deploy)."""

    kind: str                 # "gpu" or "cpu": the key in the catalog's `images`
    name: str
    ssm_parameter: str
    root_device_name: str
    root_volume_gib: int
    python: str               # the interpreter the bootstrap uses (the DLAMI's PyTorch venv, or python3)
    supports: str
    source: str
    as_of: str
    pip_extra_index_url: str | None = None  # e.g. PyTorch's CPU wheel index on the CPU image


@dataclass(frozen=True)
class Catalog:
    as_of: str
    source: str
    instances: Mapping[str, InstanceSpec]
    images: Mapping[str, MachineImage] = field(default_factory=dict)
    ebs_gp3_usd_per_gib_month: Mapping[str, float] = field(default_factory=dict)

    def image_for(self, instance_type: str) -> MachineImage:
        """The image a type boots on EC2, or a one-line error (refused types, unknown types)."""
        spec = self.get(instance_type).require_launchable()
        return self.images[spec.image]

    def ebs_usd_per_hour(self, gib: int, region: str) -> float:
        """gp3 root volume cost per hour (EBS bills GiB-months, per second, 730 hours a month)."""
        return gib * self.ebs_gp3_usd_per_gib_month.get(region, 0.08) / 730.0

    @property
    def regions(self) -> set[str]:
        return {r for spec in self.instances.values() for r in spec.on_demand_usd_per_hour}

    def get(self, instance_type: str) -> InstanceSpec:
        """The spec of `instance_type`, or a one-line error naming the closest known types."""
        spec = self.instances.get(instance_type)
        if spec is None:
            raise TrainfleetInputError(f"unknown instance type {instance_type!r}: not in the catalog dated "
                                       f"{self.as_of}{did_you_mean(instance_type, self.instances)}")
        return spec

    def require_region(self, region: str) -> str:
        if region not in self.regions:
            raise TrainfleetInputError(
                f"unknown region {region!r}: catalog has prices for {', '.join(sorted(self.regions))}"
            )
        return region


def _family_fields(name: str, fields: Mapping, data: Mapping) -> dict:
    """What the catalog's `families` and `min_memory_gib` say about one instance type."""
    family = data.get("families", {}).get(name.split(".", 1)[0])
    if family is None:
        return {"image": None, "refused": "its family has no machine image in the catalog (add it under `families`)"}
    refused = family.get("refused")
    minimum = data.get("min_memory_gib", 0)
    if not refused and fields["memory_gib"] < minimum:
        refused = (f"{fields['memory_gib']:g} GiB of memory is too little for PyTorch and pip (at least {minimum:g} GiB); "
                   "use a larger size of the family")
    return {"image": None if refused else family["image"], "refused": refused,
            "burstable": bool(family.get("burstable", False))}


PRICE_DATES = {"on_demand_usd_per_hour": "on_demand_as_of", "sagemaker_usd_per_hour": "sagemaker_as_of"}


def price_dates(name: str, fields: Mapping) -> dict[str, dict[str, str]]:
    """Each price's date, region by region: `<prices>_as_of` is one date for all of the type's prices of
    that kind, or {region: date}. A price without a date is refused: the catalog never mixes dates silently."""
    dated = {}
    for prices_key, dates_key in PRICE_DATES.items():
        prices, dates = fields.get(prices_key) or {}, fields.get(dates_key)
        by_region = {region: dates for region in prices} if isinstance(dates, str) else dict(dates or {})
        undated = sorted(set(prices) - set(by_region))
        if undated:
            raise ValueError(f"catalog: {name} has {prices_key} without a date ({dates_key}) in {', '.join(undated)}")
        dated[dates_key] = {region: by_region[region] for region in prices}
    return dated


def parse_catalog(data: Mapping) -> Catalog:
    gpu_peaks = data.get("gpu_peaks", {})
    instances = {
        name: InstanceSpec(name=name, **{**fields, **price_dates(name, fields), **_family_fields(name, fields, data)},
                           gpu_peaks={p: gpu_peaks[fields["gpu_model"]].get(p) for p in PRECISIONS}
                           if fields.get("gpu_model") in gpu_peaks else {})
        for name, fields in data["instances"].items()
    }
    images = {kind: MachineImage(kind=kind, **fields) for kind, fields in data.get("images", {}).items()}
    return Catalog(as_of=data["as_of"], source=data.get("source", ""), instances=instances, images=images,
                   ebs_gp3_usd_per_gib_month=data.get("ebs_gp3_usd_per_gib_month", {}))


@lru_cache(maxsize=4)
def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    return parse_catalog(json.loads(Path(path).read_text()))
