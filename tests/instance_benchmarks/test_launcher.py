"""Launch, idempotent relaunch, budget refusal and teardown against in-process moto."""
import base64

import pytest

from instance_benchmarks.campaigns.spec import parse_spec
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.backends.ec2.instances import (
    CAMPAIGN_TAG, LIVE_STATES, RUN_TAG, campaign_instances, launch_campaign, resolve_infrastructure, status_rows,
    tag, teardown,
)
from instance_benchmarks.campaigns.store import read_json, run_location, write_json
from instance_benchmarks.core.bootstrap import decode_agent_config
from tests.instance_benchmarks.conftest import spec_dict


def test_launch_one_tagged_instance_per_run(ec2, s3, infra, spec):
    summary = launch_campaign(ec2, s3, spec, infra)
    assert len(summary.launched) == 6
    instances = campaign_instances(ec2, "sweep", LIVE_STATES)
    assert sorted(tag(i, RUN_TAG) for i in instances) == sorted(r.run_id for r in spec.runs())
    assert {i["InstanceType"] for i in instances} == {"c5.xlarge"}
    assert {i["SubnetId"] for i in instances} == set(infra.subnet_ids)  # spread over both AZs
    user_data = ec2.describe_instance_attribute(InstanceId=instances[0]["InstanceId"], Attribute="userData")
    config = decode_agent_config(base64.b64decode(user_data["UserData"]["Value"]).decode())
    assert config["bucket"] == infra.bucket and config["market"] == "spot"
    assert config["price"]["usd_per_hour"] <= 0.17  # the quoted price travels with the run
    record = read_json(run_location(s3, infra.bucket, "sweep", config["run_id"]), "launch.json")
    assert record["attempts"][0]["instance_id"] in {i["InstanceId"] for i in instances}
    assert record["attempts"][0]["price"] == config["price"]


def test_relaunch_is_idempotent(ec2, s3, infra, spec):
    launch_campaign(ec2, s3, spec, infra)
    again = launch_campaign(ec2, s3, spec, infra)
    assert again.launched == [] and len(again.skipped_live) == 6
    assert len(campaign_instances(ec2, "sweep")) == 6


def test_finished_runs_are_not_launched_again(ec2, s3, infra, spec):
    launch_campaign(ec2, s3, spec, infra)
    teardown(ec2, "sweep")
    done = spec.runs()[0]
    write_json(run_location(s3, infra.bucket, "sweep", done.run_id), "result.json", {"status": "complete"})
    again = launch_campaign(ec2, s3, spec, infra)
    assert again.skipped_complete == [done.run_id]
    assert sorted(x["run_id"] for x in again.launched) == sorted(r.run_id for r in spec.runs()[1:])
    assert all(x["attempt"] == 2 for x in again.launched)


def test_over_budget_launches_nothing(ec2, s3, infra):
    spec = parse_spec(spec_dict(budget_usd=0.2, matrix={"instance_type": ["p3.2xlarge"], "batch_size": [3, 5]}))
    with pytest.raises(TrainfleetInputError, match=r"budget \$0.20 refused.*nothing launched"):
        launch_campaign(ec2, s3, spec, infra)
    assert campaign_instances(ec2, "sweep") == []


def test_declined_estimate_launches_nothing(ec2, s3, infra, spec):
    summary = launch_campaign(ec2, s3, spec, infra, confirm_estimate=lambda plan, pending: False)
    assert summary.launched == [] and campaign_instances(ec2, "sweep") == []


def test_max_attempts_stops_relaunching(ec2, s3, infra):
    spec = parse_spec(spec_dict(max_attempts=1, matrix={"instance_type": ["c5.xlarge"], "batch_size": [3]}))
    launch_campaign(ec2, s3, spec, infra)
    teardown(ec2, "sweep")
    again = launch_campaign(ec2, s3, spec, infra)
    assert again.launched == [] and again.gave_up == [spec.runs()[0].run_id]


def test_teardown_leaves_nothing_running(ec2, s3, infra, spec):
    launch_campaign(ec2, s3, spec, infra)
    other = parse_spec(spec_dict(campaign="other", matrix={"instance_type": ["m5.large"], "batch_size": [3]}))
    launch_campaign(ec2, s3, other, infra)
    summary = teardown(ec2, "sweep")
    assert len(summary.terminated) == 6
    assert campaign_instances(ec2, "sweep", LIVE_STATES) == []
    assert len(campaign_instances(ec2, "other", LIVE_STATES)) == 1  # other campaigns untouched
    requests = ec2.describe_spot_instance_requests(
        Filters=[{"Name": f"tag:{CAMPAIGN_TAG}", "Values": ["sweep"]}, {"Name": "state", "Values": ["open", "active"]}])
    assert requests["SpotInstanceRequests"] == []


def test_teardown_cancels_open_spot_requests(ec2, infra):
    ec2.request_spot_instances(
        InstanceCount=1, LaunchSpecification={"ImageId": "ami-12c6146b", "InstanceType": "c5.xlarge"},
        TagSpecifications=[{"ResourceType": "spot-instances-request", "Tags": [{"Key": CAMPAIGN_TAG, "Value": "sweep"}]}])
    summary = teardown(ec2, "sweep")
    assert len(summary.cancelled_spot_requests) == 1


def test_status_rows_show_cost_so_far(ec2, s3, infra, spec):
    launch_campaign(ec2, s3, spec, infra)
    rows = status_rows(ec2, s3, infra.bucket, "sweep")
    assert [r["instance_state"] for r in rows] == ["running"] * 6, rows
    assert all(r["cost_usd"] > 0 for r in rows)


def test_not_deployed_is_a_clear_error(ssm):
    with pytest.raises(TrainfleetInputError, match="not deployed.*cdk deploy"):
        resolve_infrastructure(ssm)


def test_missing_bucket_is_a_clear_error(ec2, s3, infra, spec):
    from dataclasses import replace

    with pytest.raises(TrainfleetInputError, match="bucket 'gone' is not reachable"):
        launch_campaign(ec2, s3, spec, replace(infra, bucket="gone"))
    assert campaign_instances(ec2, "sweep") == []
