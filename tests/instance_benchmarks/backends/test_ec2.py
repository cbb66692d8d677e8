"""EC2 specifics: client tokens that keep the attempt, end times from state transitions."""
from datetime import datetime, timezone

from instance_benchmarks.backends.ec2.instances import client_token, ended_at


def test_client_token_keeps_the_attempt_for_long_names():
    campaign, run = "c" * 63, "c5-xlarge-12345678"
    tokens = {client_token(campaign, run, attempt) for attempt in (1, 2, 3)}
    assert len(tokens) == 3 and all(len(t) <= 64 for t in tokens)
    assert client_token("short", "r", 2) == "short/r/2"


def test_ended_at_reads_the_state_transition_reason():
    instance = {"StateTransitionReason": "User initiated (2026-11-23 13:44:05 GMT)"}
    assert ended_at(instance) == datetime(2026, 11, 23, 13, 44, 5, tzinfo=timezone.utc)
    assert ended_at({"StateTransitionReason": ""}) is None


# What EC2 answers and moto never does (EC2 API reference, "Error codes for the Amazon EC2 API"; EC2 User
# Guide, "Service-linked role for Spot Instance requests"), raised where botocore would raise it.
import pytest  # noqa: E402

from instance_benchmarks import runner  # noqa: E402
from instance_benchmarks.backends.ec2.instances import LIVE_STATES, campaign_instances  # noqa: E402
from instance_benchmarks.campaigns.store import read_json, run_location  # noqa: E402
from tests.instance_benchmarks.conftest import bound_spec, spec_dict  # noqa: E402
from tests.instance_benchmarks.test_runner import _failing_run_instances, _is_spot  # noqa: E402


@pytest.mark.parametrize("code, fix", [
    ("AuthFailure.ServiceLinkedRoleCreationNotPermitted",
     "aws iam create-service-linked-role --aws-service-name spot.amazonaws.com"),
    ("PendingVerification", "account is still being verified"),
    ("OptInRequired", "enable the region"),
])
def test_an_account_not_set_up_stops_the_launch_with_the_fix(env, ec2, s3, infra, monkeypatch, code, fix):
    """A fresh account: no spot service-linked role (and no iam:CreateServiceLinkedRole), or not verified yet.
    Before, the ClientError escaped and the campaign crashed mid-launch."""
    spec = bound_spec(spec_dict(matrix={"instance_type": ["c5.xlarge", "g4dn.xlarge"], "batch_size": [3]}))
    calls = _failing_run_instances(env, monkeypatch, code, _is_spot)
    summary = runner.launch(env, spec)
    assert summary.launched == [] and len(calls) == 1  # no other AZ, no other run: nothing changes until fixed
    assert fix in summary.stopped and len(summary.not_started) == 2
    assert [r["kind"] for r in summary.refused] == ["account"]
    first = read_json(run_location(s3, infra.bucket, "sweep", spec.runs()[0].run_id), "launch.json")
    assert [(a["outcome"], a["cost_usd"]) for a in first["attempts"]] == [("launch_refused", 0.0)]
    assert campaign_instances(ec2, "sweep", LIVE_STATES) == []
    assert "\n" not in runner.stop_message(summary)


def test_unfulfillable_spot_capacity_tries_the_other_az_then_the_fallback(env, ec2, infra, monkeypatch):
    spec = bound_spec(spec_dict(fallback={"market": "on-demand"}, matrix={"instance_type": ["c5.xlarge"],
                                                                          "batch_size": [3]}))
    calls = _failing_run_instances(env, monkeypatch, "UnfulfillableCapacity", _is_spot)
    summary = runner.launch(env, spec)
    assert len({c["SubnetId"] for c in calls if _is_spot(c)}) == 2  # both AZs of the stack
    assert [(x["market"], x["outcome"]) for x in summary.launched] == [("on-demand", "launched")]
    assert [r["kind"] for r in summary.refused] == ["capacity"]
