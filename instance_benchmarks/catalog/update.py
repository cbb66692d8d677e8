"""Refresh the dated catalog from AWS: hardware from `describe_instance_types`, on-demand prices from
the Pricing API. Writes data/catalog.json (or --out); run by a person with credentials, never at
launch time and never in tests against real AWS.

    python -m instance_benchmarks.catalog.update [--regions us-east-1 eu-west-2 ...] [--types c5.xlarge ...]

Every region in REGIONS by default; a type gets a price only in the regions where the Pricing API sells
it. SageMaker training prices (`sagemaker_usd_per_hour`) are not in these APIs: the current catalog's are kept.
"""
from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

from instance_benchmarks.catalog import CATALOG_PATH, load_catalog

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
        instances[name] = {**hw[name], "on_demand_usd_per_hour": prices}
    for name, fields in instances.items():  # curated: SageMaker prices are not in the EC2 Pricing API
        sagemaker = current["instances"].get(name, {}).get("sagemaker_usd_per_hour")
        if sagemaker:
            fields["sagemaker_usd_per_hour"] = sagemaker
    kept = {key: value for key, value in current.items() if key not in ("as_of", "source", "instances")}
    return {
        "as_of": today,
        "source": "describe_instance_types and the AWS Pricing API (Linux, shared tenancy, on-demand)",
        **kept,  # notes, images, families, gpu_peaks, min_memory_gib, EBS price: curated, not in these APIs
        "instances": instances,
    }


def dump_catalog(catalog: dict) -> str:
    """The catalog as JSON, one line per instance type (reviewable diffs)."""
    head = json.dumps({k: v for k, v in catalog.items() if k != "instances"}, indent=2)[:-2]
    lines = [f"    {json.dumps(name)}: {json.dumps(fields)}" for name, fields in catalog["instances"].items()]
    return head + ',\n  "instances": {\n' + ",\n".join(lines) + "\n  }\n}\n"


def main(argv: list[str] | None = None) -> None:
    import boto3

    parser = argparse.ArgumentParser(description="Refresh the trainfleet instance/price catalog from AWS.")
    parser.add_argument("--regions", nargs="+", default=list(REGIONS))
    parser.add_argument("--types", nargs="*", default=None, help="instance types (default: those in the catalog)")
    parser.add_argument("--out", type=Path, default=CATALOG_PATH)
    args = parser.parse_args(argv)
    types = args.types or sorted(load_catalog().instances)
    ec2 = boto3.client("ec2", region_name=args.regions[0])
    pricing = boto3.client("pricing", region_name="us-east-1")  # the Pricing API's home region
    catalog = build_catalog(ec2, pricing, types, args.regions, date.today().isoformat())
    args.out.write_text(dump_catalog(catalog))
    print(f"wrote {len(catalog['instances'])} instance types to {args.out} (as of {catalog['as_of']})")


if __name__ == "__main__":
    main()
