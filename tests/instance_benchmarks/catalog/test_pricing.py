from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import ANY, Stubber

from instance_benchmarks.catalog import load_catalog
from instance_benchmarks.catalog.pricing import latest_spot_price, quote
from instance_benchmarks.core.billing import billed_seconds, cost_usd


@pytest.mark.parametrize("seconds, billed", [(0, 60), (1, 60), (59.2, 60), (60, 60), (60.01, 61), (3600, 3600)])
def test_per_second_billing_with_60s_minimum(seconds, billed):
    assert billed_seconds(seconds) == billed


def test_cost():
    assert cost_usd(3600, 0.17) == pytest.approx(0.17)
    assert cost_usd(10, 3.6) == pytest.approx(0.06)  # 60 s minimum


def _stubbed_ec2(history):
    client = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    stubber.add_response("describe_spot_price_history", {"SpotPriceHistory": history},
                         {"InstanceTypes": ["c5.xlarge"], "ProductDescriptions": ["Linux/UNIX"], "StartTime": ANY, "EndTime": ANY})
    stubber.activate()
    return client


def _item(az, price, hour):
    return {"AvailabilityZone": az, "InstanceType": "c5.xlarge", "ProductDescription": "Linux/UNIX",
            "SpotPrice": str(price), "Timestamp": datetime(2026, 11, 22, hour, tzinfo=timezone.utc)}


def test_latest_spot_price_takes_newest_per_az_then_cheapest():
    ec2 = _stubbed_ec2([_item("us-east-1a", 0.05, 10), _item("us-east-1a", 0.07, 11), _item("us-east-1b", 0.06, 11)])
    assert latest_spot_price(ec2, "c5.xlarge") == (0.06, "us-east-1b")


def test_spot_quote_is_capped_by_on_demand_and_records_source():
    ec2 = _stubbed_ec2([_item("us-east-1a", 0.071, 11)])
    q = quote(ec2, load_catalog().get("c5.xlarge"), region="us-east-1", market="spot")
    assert (q.market, q.usd_per_hour, q.on_demand_usd_per_hour) == ("spot", 0.071, 0.17)
    assert "describe_spot_price_history" in q.source


def test_spot_quote_without_history_uses_on_demand_ceiling():
    ec2 = _stubbed_ec2([])
    q = quote(ec2, load_catalog().get("c5.xlarge"), region="us-east-1", market="spot")
    assert q.usd_per_hour == 0.17 and "on-demand ceiling" in q.source


def test_spot_quote_against_moto(ec2):
    q = quote(ec2, load_catalog().get("m5.large"), region="us-east-1", market="spot")
    assert 0 < q.usd_per_hour <= 0.096


def test_spot_quote_only_looks_at_the_stacks_zones_and_adds_the_root_volume():
    """us-east-1c is cheapest, but the stack's subnets are in 1a and 1b: instances can only start there."""
    ec2 = _stubbed_ec2([_item("us-east-1a", 0.07, 11), _item("us-east-1b", 0.065, 11), _item("us-east-1c", 0.03, 11)])
    q = quote(ec2, load_catalog().get("c5.xlarge"), region="us-east-1", market="spot",
              zones=frozenset({"us-east-1a", "us-east-1b"}), storage_usd_per_hour=0.003, storage_note="30 GiB gp3 root")
    assert q.availability_zone == "us-east-1b"
    assert q.usd_per_hour == pytest.approx(0.068) and q.on_demand_usd_per_hour == pytest.approx(0.173)
    assert q.worst_usd_per_hour == pytest.approx(0.173) and q.storage_usd_per_hour == 0.003
    assert "us-east-1b" in q.source and "30 GiB gp3 root" in q.source


def test_no_spot_price_in_the_stacks_zones_falls_back_to_the_on_demand_ceiling():
    ec2 = _stubbed_ec2([_item("us-east-1c", 0.03, 11)])
    q = quote(ec2, load_catalog().get("c5.xlarge"), region="us-east-1", market="spot",
              zones=frozenset({"us-east-1a"}))
    assert q.usd_per_hour == 0.17 and "no spot price history in the stack's AZs" in q.source


def test_every_catalog_price_has_its_own_date_and_the_quote_names_it():
    """p4d (us-east-1) was priced before AWS's June 2025 P4/P5 reduction while p5 was priced after it: a p4d
    budget half again too high. Now each price carries its date, and the quote's source (the report's
    "price source") says which."""
    catalog = load_catalog()
    for spec in catalog.instances.values():
        assert set(spec.on_demand_as_of) == set(spec.on_demand_usd_per_hour), spec.name
        assert set(spec.sagemaker_as_of) == set(spec.sagemaker_usd_per_hour), spec.name
    p4d, p5 = catalog.get("p4d.24xlarge"), catalog.get("p5.48xlarge")
    assert p4d.on_demand_date("us-east-1") >= "2025-06-01" and p4d.on_demand_price("us-east-1") < 32.7726 * 0.7
    assert p5.on_demand_price("us-east-1") == 55.04 and p4d.price_source and p5.price_source
    on_demand = quote(None, p4d, region="us-east-1", market="on-demand")
    assert on_demand.source == f"catalog price of {p4d.on_demand_date('us-east-1')}"
    ceiling = quote(None, catalog.get("c5.xlarge"), region="us-east-1", market="spot", spot_history=False)
    assert ceiling.source == "spot history not used; on-demand ceiling: catalog price of 2025-06-01"
