"""The catalog's regions: the main ones where its families are sold, the seed's eu-west-2 table priceable."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from instance_benchmarks.catalog import load_catalog
from instance_benchmarks.catalog.pricing import quote
from instance_benchmarks.catalog.update import REGIONS, build_catalog
from instance_benchmarks.core.errors import TrainfleetInputError

ROOT = Path(__file__).resolve().parents[3]
MAIN_REGIONS = {"us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-west-2", "eu-central-1", "ap-northeast-1"}
SEED_EU_WEST_2 = ["t2.micro", "t3.2xlarge", "m5.24xlarge", "c5.2xlarge", "c5.4xlarge", "c5.24xlarge", "p3.2xlarge"]


def test_the_main_regions_have_instance_and_storage_prices():
    catalog = load_catalog()
    assert MAIN_REGIONS <= catalog.regions
    assert MAIN_REGIONS <= set(catalog.ebs_gp3_usd_per_gib_month)
    for region in MAIN_REGIONS:
        assert catalog.require_region(region) == region
        assert 0.07 < catalog.ebs_gp3_usd_per_gib_month[region] < 0.15
        # every CPU family is sold everywhere; the GPU families at least as g4dn
        assert {"t2", "t3", "c5", "m5", "p3", "g4dn"} <= {
            spec.family for spec in catalog.instances.values() if region in spec.on_demand_usd_per_hour}


@pytest.mark.parametrize("instance_type", SEED_EU_WEST_2)
def test_the_seeds_eu_west_2_table_can_be_priced(instance_type):
    catalog = load_catalog()
    spec = catalog.get(instance_type)
    priced = quote(None, spec, region="eu-west-2", market="on-demand",
                   storage_usd_per_hour=catalog.ebs_usd_per_hour(30, "eu-west-2"))
    assert priced.usd_per_hour > spec.on_demand_price("us-east-1")  # London lists above N. Virginia
    assert priced.storage_usd_per_hour == pytest.approx(30 * 0.0928 / 730)


def test_regional_prices_are_not_below_the_us_and_scale_with_size():
    catalog = load_catalog()
    for spec in catalog.instances.values():
        prices = spec.on_demand_usd_per_hour
        for region, price in prices.items():
            assert price >= prices["us-east-1"] - 1e-9, (spec.name, region)
            assert price <= prices["us-east-1"] * 1.45, (spec.name, region)  # a typo would stand out
    for family in ("c5", "m5", "t3"):
        sizes = sorted((s for s in catalog.instances.values() if s.family == family), key=lambda s: s.vcpus)
        for region in MAIN_REGIONS:
            priced = [s.on_demand_usd_per_hour[region] for s in sizes if region in s.on_demand_usd_per_hour]
            assert priced == sorted(priced), (family, region)


def test_the_new_sizes_have_their_documented_hardware_and_peaks():
    catalog = load_catalog()
    c5, m5 = catalog.get("c5.24xlarge"), catalog.get("m5.24xlarge")
    assert (c5.vcpus, c5.memory_gib, m5.vcpus, m5.memory_gib) == (96, 192, 96, 384)
    # peak = physical cores (vCPUs / 2) x base GHz x 32 FLOPs/cycle: the same per vCPU as the family's smaller sizes
    for big, small in ((c5, catalog.get("c5.xlarge")), (m5, catalog.get("m5.xlarge"))):
        assert big.peak_fp32_tflops / big.vcpus == pytest.approx(small.peak_fp32_tflops / small.vcpus)
        assert big.image == "cpu" and not big.refused


def test_a_type_not_sold_in_a_region_is_refused_with_one_line():
    catalog = load_catalog()
    with pytest.raises(TrainfleetInputError, match=r"no on-demand price for g6.xlarge in region 'eu-west-1'"):
        catalog.get("g6.xlarge").on_demand_price("eu-west-1")


def test_catalog_list_in_a_new_region_and_an_unknown_one():
    from instance_benchmarks.cli import app

    result = CliRunner().invoke(app, ["catalog", "list", "--region", "eu-west-1"])
    assert result.exit_code == 0 and "c5.24xlarge" in result.output and "eu-west-1" in result.output
    done = subprocess.run([sys.executable, "-c", "from instance_benchmarks.cli import main; main()",
                           "catalog", "list", "--region", "eu-west-9"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "unknown region 'eu-west-9'" in done.stderr and "eu-central-1" in done.stderr


def test_the_updater_covers_the_regions_and_keeps_sagemaker_prices():
    assert MAIN_REGIONS == set(REGIONS)
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    pricing = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")

    def product(usd: str) -> dict:
        return {"PriceList": [json.dumps({"terms": {"OnDemand": {"T": {"priceDimensions": {
            "D": {"pricePerUnit": {"USD": usd}}}}}}})]}

    with Stubber(ec2) as ec2_stub, Stubber(pricing) as pricing_stub:
        ec2_stub.add_response("describe_instance_types", {"InstanceTypes": [
            {"InstanceType": "c5.xlarge", "VCpuInfo": {"DefaultVCpus": 4, "DefaultCores": 2},
             "MemoryInfo": {"SizeInMiB": 8192}, "ProcessorInfo": {"SustainedClockSpeedInGhz": 3.0}}]})
        pricing_stub.add_response("get_products", product("0.17"), {
            "ServiceCode": "AmazonEC2", "MaxResults": 10, "Filters": [
                {"Type": "TERM_MATCH", "Field": "instanceType", "Value": "c5.xlarge"},
                {"Type": "TERM_MATCH", "Field": "regionCode", "Value": "us-east-1"},
                {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
                {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
                {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
                {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"}]})
        pricing_stub.add_response("get_products", product("0.202"))
        pricing_stub.add_response("get_products", {"PriceList": []})  # not sold there: left out
        catalog = build_catalog(ec2, pricing, ["c5.xlarge"], ["us-east-1", "eu-west-2", "ap-northeast-1"], "2026-12-01")
    c5 = catalog["instances"]["c5.xlarge"]
    assert c5["on_demand_usd_per_hour"] == {"us-east-1": 0.17, "eu-west-2": 0.202}
    assert c5["sagemaker_usd_per_hour"] == load_catalog().get("c5.xlarge").sagemaker_usd_per_hour
    assert catalog["ebs_gp3_usd_per_gib_month"]["eu-west-2"] == 0.0928
