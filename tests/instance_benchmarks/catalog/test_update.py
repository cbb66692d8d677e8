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
    # every price with its date: the fetched ones today's, the kept SageMaker prices the date they were set
    assert g5["on_demand_as_of"] == "2026-11-22" and g5["sagemaker_as_of"]["us-east-1"] == "2025-06-01"


def _mixed_catalog() -> dict:
    return {"as_of": "2026-11-22", "instances": {
        "g5.xlarge": {"on_demand_usd_per_hour": {"us-east-1": 1.006}, "on_demand_as_of": "2026-11-22",
                      "sagemaker_usd_per_hour": {"us-east-1": 1.408}, "sagemaker_as_of": {"us-east-1": "2025-06-01"}},
        "c5.xlarge": {"on_demand_usd_per_hour": {"us-east-1": 0.17}, "on_demand_as_of": "2026-11-22"}}}


def test_the_updater_refuses_to_mix_price_dates_silently():
    import pytest

    from instance_benchmarks.catalog.update import check_price_dates
    from instance_benchmarks.core.errors import TrainfleetInputError

    with pytest.raises(TrainfleetInputError, match=r"mix prices from 2 dates \(2025-06-01: 1 prices, e.g. g5.xlarge "
                                                   r"sagemaker us-east-1; 2026-11-22: 2 prices"):
        check_price_dates(_mixed_catalog(), allow_mixed=False)
    assert check_price_dates(_mixed_catalog(), allow_mixed=True) == {"2025-06-01", "2026-11-22"}
    undated = _mixed_catalog()
    del undated["instances"]["c5.xlarge"]["on_demand_as_of"]
    with pytest.raises(ValueError, match="c5.xlarge has on_demand_usd_per_hour without a date"):
        check_price_dates(undated, allow_mixed=True)


def test_update_main_writes_nothing_when_dates_mix(tmp_path, monkeypatch, capsys):
    from instance_benchmarks.catalog import update

    monkeypatch.setattr(update, "build_catalog", lambda *args: _mixed_catalog())
    out = tmp_path / "catalog.json"
    assert update.main(["--types", "c5.xlarge", "--out", str(out)]) == 2
    assert not out.exists() and "nothing written" in capsys.readouterr().err
    assert update.main(["--types", "c5.xlarge", "--out", str(out), "--allow-mixed-dates"]) == 0
    written = json.loads(out.read_text())["instances"]["g5.xlarge"]
    assert written["sagemaker_as_of"] == {"us-east-1": "2025-06-01"} and written["on_demand_as_of"] == "2026-11-22"
