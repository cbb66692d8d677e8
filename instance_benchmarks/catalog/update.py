"""Refresh the dated catalog from AWS: hardware from `describe_instance_types`, on-demand prices from
the Pricing API. Writes data/catalog.json (or --out); run by a person with credentials, never at
launch time and never in tests against real AWS.

    python -m instance_benchmarks.catalog.update [--regions us-east-1 eu-west-2 ...] [--types c5.xlarge ...]

Every region in REGIONS by default; a type gets a price only in the regions where the Pricing API sells
it. SageMaker training prices (`sagemaker_usd_per_hour`) are not in these APIs: the current catalog's are kept.

Every price carries its own date (`on_demand_as_of`, `sagemaker_as_of`: one date, or one per region). A
catalog whose prices come from different dates (the kept SageMaker prices, say) is refused unless
--allow-mixed-dates says so; then each price is written with its own date, and reports show it.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import boto3

from instance_benchmarks.catalog import CATALOG_PATH, load_catalog
from instance_benchmarks.catalog.instances import price_dates
from instance_benchmarks.core.errors import TrainfleetInputError

LOCATION_FILTER = "regionCode"
REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-west-2", "eu-central-1", "ap-northeast-1")


def hardware(ec2, instance_types: list[str], gpu_peaks: dict) -> dict[str, dict]:
    """What describe_instance_types says of each type; GPU peaks from the catalog's curated `gpu_peaks` (dense
    TFLOP/s per GPU model) x the GPU count."""
    found = {}
    paginator = ec2.get_paginator("describe_instance_types")
    for page in paginator.paginate(InstanceTypes=instance_types):
        for item in page["InstanceTypes"]:
            vcpus = item["VCpuInfo"]["DefaultVCpus"]
            cores = item["VCpuInfo"].get("DefaultCores", max(1, vcpus // 2))
            ghz = item.get("ProcessorInfo", {}).get("SustainedClockSpeedInGhz", 2.5)
            gpus = item.get("GpuInfo", {}).get("Gpus", [])
            gpu = gpus[0] if gpus else None
            count = sum(g["Count"] for g in gpus)
            cpu_peak = round(cores * ghz * 32 / 1000, 3)
            peaks = gpu_peaks.get(gpu["Name"], {}) if gpu else {}
            fp32, fp16 = (peaks["fp32"], peaks["fp16"]) if peaks else (cpu_peak, cpu_peak)
            found[item["InstanceType"]] = {
                "vcpus": vcpus,
                "memory_gib": round(item["MemoryInfo"]["SizeInMiB"] / 1024, 1),
                "gpu_model": gpu["Name"] if gpu else None,
                "gpu_count": count,
                "gpu_memory_gib": round(gpu["MemoryInfo"]["SizeInMiB"] / 1024) if gpu else 0,
                "peak_fp32_tflops": round(fp32 * max(1, count), 3) if gpu else cpu_peak,
                "peak_fp16_tflops": round(fp16 * max(1, count), 3) if gpu else cpu_peak,
            }
    return found


def on_demand_price(pricing, instance_type: str, region: str) -> float | None:
    filters = [
        {"Type": "TERM_MATCH", "Field": "instanceType", "Value": instance_type},
        {"Type": "TERM_MATCH", "Field": LOCATION_FILTER, "Value": region},
        {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
        {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
        {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
        {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
    ]
    response = pricing.get_products(ServiceCode="AmazonEC2", Filters=filters, MaxResults=10)
    for raw in response["PriceList"]:
        product = json.loads(raw) if isinstance(raw, str) else raw
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dimension in term["priceDimensions"].values():
                usd = float(dimension["pricePerUnit"].get("USD", 0))
                if usd > 0:
                    return usd
    return None


def build_catalog(ec2, pricing, instance_types: list[str], regions: list[str], today: str) -> dict:
    current = json.loads(CATALOG_PATH.read_text())
    hw = hardware(ec2, instance_types, current.get("gpu_peaks", {}))
    instances = {}
    for name in instance_types:
        if name not in hw:
            continue
        prices = {r: p for r in regions if (p := on_demand_price(pricing, name, r)) is not None}
        instances[name] = {**hw[name], "on_demand_usd_per_hour": prices, "on_demand_as_of": today}
    for name, fields in instances.items():  # curated: SageMaker prices are not in the EC2 Pricing API
        old = current["instances"].get(name, {})
        if old.get("sagemaker_usd_per_hour"):  # kept with the dates they were established
            fields["sagemaker_usd_per_hour"] = old["sagemaker_usd_per_hour"]
            fields["sagemaker_as_of"] = price_dates(name, old)["sagemaker_as_of"]
    kept = {key: value for key, value in current.items() if key not in ("as_of", "source", "instances")}
    return {
        "as_of": today,
        "source": "describe_instance_types and the AWS Pricing API (Linux, shared tenancy, on-demand)",
        **kept,  # notes, images, families, gpu_peaks, min_memory_gib, EBS price: curated, not in these APIs
        "instances": instances,
    }


def check_price_dates(catalog: dict, allow_mixed: bool) -> set[str]:
    """The dates of the catalog's prices; more than one is an input error unless `allow_mixed` (each price
    then keeps its own date, so a budget or a report can tell an old price from a new one)."""
    by_date: dict[str, list[str]] = {}
    for name, fields in catalog["instances"].items():
        for dates_key, dates in price_dates(name, fields).items():
            for region, day in dates.items():
                by_date.setdefault(day, []).append(f"{name} {dates_key.removesuffix('_as_of')} {region}")
    if len(by_date) > 1 and not allow_mixed:
        listed = "; ".join(f"{day}: {len(found)} prices, e.g. {found[0]}" for day, found in sorted(by_date.items()))
        raise TrainfleetInputError(f"the catalog would mix prices from {len(by_date)} dates ({listed}); "
                                   "refresh them all, or pass --allow-mixed-dates to write each with its own date")
    return set(by_date)


def dump_catalog(catalog: dict) -> str:
    """The catalog as JSON, one line per instance type (reviewable diffs)."""
    head = json.dumps({k: v for k, v in catalog.items() if k != "instances"}, indent=2)[:-2]
    lines = [f"    {json.dumps(name)}: {json.dumps(fields)}" for name, fields in catalog["instances"].items()]
    return head + ',\n  "instances": {\n' + ",\n".join(lines) + "\n  }\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Refresh the trainfleet instance/price catalog from AWS.")
    parser.add_argument("--regions", nargs="+", default=list(REGIONS))
    parser.add_argument("--types", nargs="*", default=None, help="instance types (default: those in the catalog)")
    parser.add_argument("--out", type=Path, default=CATALOG_PATH)
    parser.add_argument("--allow-mixed-dates", action="store_true",
                        help="write prices of different dates (e.g. the kept SageMaker prices), each with its date")
    args = parser.parse_args(argv)
    types = args.types or sorted(load_catalog().instances)
    ec2 = boto3.client("ec2", region_name=args.regions[0])
    pricing = boto3.client("pricing", region_name="us-east-1")  # the Pricing API's home region
    catalog = build_catalog(ec2, pricing, types, args.regions, date.today().isoformat())
    try:
        dates = check_price_dates(catalog, args.allow_mixed_dates)
    except TrainfleetInputError as error:
        print(f"error: {error}; nothing written", file=sys.stderr)
        return 2
    args.out.write_text(dump_catalog(catalog))
    print(f"wrote {len(catalog['instances'])} instance types to {args.out} (prices of {', '.join(sorted(dates))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
