"""The dated instance/price catalog: hardware and prices as data, read here; spot prices at launch (pricing)."""
from instance_benchmarks.catalog.instances import (
    CATALOG_PATH, Catalog, InstanceSpec, MachineImage, load_catalog, parse_catalog,
)

__all__ = ["CATALOG_PATH", "Catalog", "InstanceSpec", "MachineImage", "load_catalog", "parse_catalog"]
