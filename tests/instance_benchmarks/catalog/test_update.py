import json

import boto3
from botocore.stub import Stubber

from instance_benchmarks.catalog.update import build_catalog


def test_build_catalog_from_stubbed_aws():
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    pricing = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(ec2) as ec2_stub, Stubber(pricing) as pricing_stub:
        ec2_stub.add_response("describe_instance_types", {"InstanceTypes": [
            {"InstanceType": "g5.xlarge", "VCpuInfo": {"DefaultVCpus": 4, "DefaultCores": 2},
             "MemoryInfo": {"SizeInMiB": 16384}, "ProcessorInfo": {"SustainedClockSpeedInGhz": 3.3},
             "GpuInfo": {"Gpus": [{"Name": "A10G", "Count": 1, "MemoryInfo": {"SizeInMiB": 24576}}]}},
            {"InstanceType": "c5.xlarge", "VCpuInfo": {"DefaultVCpus": 4, "DefaultCores": 2},
             "MemoryInfo": {"SizeInMiB": 8192}, "ProcessorInfo": {"SustainedClockSpeedInGhz": 3.0}},
        ]})
        product = {"terms": {"OnDemand": {"T": {"priceDimensions": {"D": {"pricePerUnit": {"USD": "1.0060000000"}}}}}}}
        zero = {"terms": {"OnDemand": {"T": {"priceDimensions": {"D": {"pricePerUnit": {"USD": "0.0000000000"}}}}}}}
        pricing_stub.add_response("get_products", {"PriceList": [json.dumps(zero), json.dumps(product)]})
        pricing_stub.add_response("get_products", {"PriceList": [json.dumps(
            {"terms": {"OnDemand": {"T": {"priceDimensions": {"D": {"pricePerUnit": {"USD": "0.17"}}}}}}})]})
        catalog = build_catalog(ec2, pricing, ["g5.xlarge", "c5.xlarge"], ["us-east-1"], "2026-11-22")
    assert catalog["as_of"] == "2026-11-22"
    g5, c5 = catalog["instances"]["g5.xlarge"], catalog["instances"]["c5.xlarge"]
    assert (g5["gpu_model"], g5["gpu_count"], g5["gpu_memory_gib"], g5["memory_gib"]) == ("A10G", 1, 24, 16.0)
    assert g5["on_demand_usd_per_hour"] == {"us-east-1": 1.006}
    assert c5["peak_fp32_tflops"] == 0.192 and c5["on_demand_usd_per_hour"] == {"us-east-1": 0.17}
    assert catalog["images"]["gpu"]["ssm_parameter"].startswith("/aws/service/deeplearning")  # curated sections kept
    assert catalog["families"]["p3"]["refused"] and catalog["min_memory_gib"] == 2
    assert (g5["peak_fp32_tflops"], g5["peak_fp16_tflops"]) == (35.0, 70.0)  # from the curated gpu_peaks, kept too
    h100, h200 = catalog["gpu_peaks"]["H100"], catalog["gpu_peaks"]["H200"]
    assert all(h200[p] == h100[p] for p in ("fp32", "tf32", "fp16", "bf16"))
