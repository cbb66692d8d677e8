"""The campaign loop against in-process moto with the EC2 backend: launch, idempotent relaunch, budget
refusal, settling attempts whose instance ended, status and teardown."""
import base64
import hashlib
import json

import pytest

from instance_benchmarks import runner
from instance_benchmarks.backends.ec2.instances import LIVE_STATES, campaign_instances, tag
from instance_benchmarks.backends.infrastructure import resolve_infrastructure
from instance_benchmarks.campaigns.store import read_json, run_location, write_json
from instance_benchmarks.core.bootstrap import agent_config_pointer
from instance_benchmarks.core.contract import CAMPAIGN_TAG, RUN_TAG
from instance_benchmarks.core.errors import TrainfleetInputError
from tests.instance_benchmarks.conftest import bound_spec, spec_dict, torn_down_run


def test_launch_one_tagged_instance_per_run(env, ec2, s3, infra, spec):
    summary = runner.launch(env, spec)
    assert len(summary.launched) == 6
    instances = campaign_instances(ec2, "sweep", LIVE_STATES)
    assert sorted(tag(i, RUN_TAG) for i in instances) == sorted(r.run_id for r in spec.runs())
    assert {i["InstanceType"] for i in instances} == {"c5.xlarge"}
    user_data = ec2.describe_instance_attribute(InstanceId=instances[0]["InstanceId"], Attribute="userData")
    key, sha256 = agent_config_pointer(base64.b64decode(user_data["UserData"]["Value"]).decode())
    body = s3.get_object(Bucket=infra.bucket, Key=key)["Body"].read()  # the task travels in S3, checksummed
    assert hashlib.sha256(body).hexdigest() == sha256
    config = json.loads(body)
    subnets = {s["SubnetId"]: s["AvailabilityZone"] for s in ec2.describe_subnets(SubnetIds=list(infra.subnet_ids))["Subnets"]}
    zone = config["price"]["availability_zone"]  # the stack's AZ with the cheapest spot price
    assert zone in subnets.values() and {subnets[i["SubnetId"]] for i in instances} == {zone}
    assert config["bucket"] == infra.bucket and config["market"] == "spot"
    assert config["price"]["usd_per_hour"] <= 0.17  # the quoted price travels with the run
    assert config["task"]["repo"] == spec.repo and config["task"]["script"] == "training_scripts/cartpole_pg.py"
    record = read_json(run_location(s3, infra.bucket, "sweep", config["run_id"]), "launch.json")
    assert record["attempts"][0]["instance_id"] in {i["InstanceId"] for i in instances}
    assert record["attempts"][0]["price"] == config["price"]
    wheel = record["attempts"][0]["agent_wheel"]
    assert s3.head_object(Bucket=infra.bucket, Key=wheel["key"])["Metadata"]["sha256"] == wheel["sha256"]


def test_relaunch_is_idempotent(env, ec2, spec):
    runner.launch(env, spec)
    again = runner.launch(env, spec)
    assert again.launched == [] and len(again.skipped_live) == 6
    assert len(campaign_instances(ec2, "sweep")) == 6


def test_finished_runs_are_not_launched_again(env, s3, infra, spec):
    runner.launch(env, spec)
    runner.teardown(env, "sweep")
    done = spec.runs()[0]
    write_json(run_location(s3, infra.bucket, "sweep", done.run_id), "result.json", {"status": "complete"})
    again = runner.launch(env, spec)
    assert again.skipped_complete == [done.run_id]
    assert sorted(x["run_id"] for x in again.launched) == sorted(r.run_id for r in spec.runs()[1:])
    assert all(x["attempt"] == 2 for x in again.launched)


def test_over_budget_launches_nothing(env, ec2):
    spec = bound_spec(spec_dict(budget_usd=0.2, matrix={"instance_type": ["g5.xlarge"], "batch_size": [3, 5]}))
    with pytest.raises(TrainfleetInputError, match=r"budget \$0.20 refused.*nothing launched"):
        runner.launch(env, spec)
    assert campaign_instances(ec2, "sweep") == []


def test_declined_estimate_launches_nothing(env, ec2, spec):
    summary = runner.launch(env, spec, confirm=lambda plan, pending: False)
    assert summary.launched == [] and campaign_instances(ec2, "sweep") == []


def _end_last_attempt(s3, infra, run_id: str, outcome: str) -> None:
    location = run_location(s3, infra.bucket, "sweep", run_id)
    record = read_json(location, "launch.json")
    record["attempts"][-1].update(outcome=outcome)
    write_json(location, "launch.json", record)


def test_max_attempts_stops_relaunching(env, s3, infra):
    spec = bound_spec(spec_dict(max_attempts=1, matrix={"instance_type": ["c5.xlarge"], "batch_size": [3]}))
    runner.launch(env, spec)
    runner.teardown(env, "sweep")
    _end_last_attempt(s3, infra, spec.runs()[0].run_id, "interrupted")  # as if spot had reclaimed it
    again = runner.launch(env, spec)
    assert again.launched == [] and again.gave_up == [spec.runs()[0].run_id]
    assert again.why_given_up[spec.runs()[0].run_id] == "1 of max_attempts 1 used"


def test_teardowns_and_never_started_attempts_do_not_count_against_max_attempts(env, s3, infra):
    """Two Ctrl-Cs (each a teardown) and a launcher killed mid-launch with max_attempts 2: the run is
    launched again, each earlier attempt kept with its cost. Before, it was given up after two."""
    spec = bound_spec(spec_dict(max_attempts=2, matrix={"instance_type": ["c5.xlarge"], "batch_size": [3]}))
    run_id = spec.runs()[0].run_id
    for _ in range(2):
        runner.launch(env, spec)
        runner.teardown(env, "sweep")
    runner.launch(env, spec)
    runner.teardown(env, "sweep")
    _end_last_attempt(s3, infra, run_id, "not_launched")
    again = runner.launch(env, spec)
    assert [x["attempt"] for x in again.launched] == [4] and again.gave_up == []
    record = read_json(run_location(s3, infra.bucket, "sweep", run_id), "launch.json")
    assert [a["outcome"] for a in record["attempts"]] == ["torn down", "torn down", "not_launched", "launched"]
    assert all(a["cost_usd"] > 0 for a in record["attempts"][:2])  # they ran: billed, kept
    assert runner.counted_attempts(record) == 1  # the live one


def test_torn_down_attempts_keep_their_cost(env, s3, infra, spec):
    """Teardown records each attempt it ends as `torn down`, billed from EC2's launch time (>= 60 s)."""
    runner.launch(env, spec)
    launched = {tag(i, RUN_TAG): i["LaunchTime"] for i in campaign_instances(env.client("ec2"), "sweep")}
    [summary] = [s for s in runner.teardown(env, "sweep") if s.backend == "ec2"]
    assert sorted(e["run_id"] for e in summary.ended) == sorted(r.run_id for r in spec.runs())
    for run in spec.runs():
        [attempt] = read_json(run_location(s3, infra.bucket, "sweep", run.run_id), "launch.json")["attempts"]
        assert attempt["outcome"] == "torn down" and attempt["billed_seconds"] >= 60
        assert attempt["cost_usd"] == pytest.approx(attempt["billed_seconds"] * attempt["price"]["usd_per_hour"] / 3600)
        assert attempt["instance_id"] == next(e["resource"] for e in summary.ended if e["run_id"] == run.run_id)
        assert [e["started_at"] for e in summary.ended if e["run_id"] == run.run_id] == [
            launched[run.run_id].isoformat(timespec="seconds")]
    rows = runner.status_rows(env, "sweep")
    assert all(r["cost_usd"] > 0 and r["status"] == "torn down" for r in rows)


def test_a_torn_down_cost_counts_in_the_budget_and_a_second_teardown_changes_nothing(env, s3, infra):
    spec = bound_spec(spec_dict(budget_usd=0.2, max_runtime_minutes=60,
                                matrix={"instance_type": ["c5.xlarge"], "batch_size": [3]}))
    runner.launch(env, spec)
    runner.teardown(env, "sweep")
    location = run_location(s3, infra.bucket, "sweep", spec.runs()[0].run_id)
    record = read_json(location, "launch.json")
    record["attempts"][0]["cost_usd"] = 0.15  # as if it had run a while before the teardown
    write_json(location, "launch.json", record)
    assert [s.ended for s in runner.teardown(env, "sweep")] == [[]]  # nothing left to end or record
    assert read_json(location, "launch.json") == record
    with pytest.raises(TrainfleetInputError, match=r"\+ \$0\.15 spent"):
        runner.launch(env, spec)  # 0.15 spent + a second worst case exceeds 0.20


def test_input_errors_and_timeouts_are_not_retried(env, s3, infra):
    spec = bound_spec(spec_dict(matrix={"instance_type": ["c5.xlarge"], "batch_size": [3, 5, 7]}))
    runner.launch(env, spec)
    runner.teardown(env, "sweep")
    outcomes = [{"outcome": "failed", "exit_code": 2}, {"outcome": "timeout", "exit_code": -9},
                {"outcome": "failed", "exit_code": 1}]
    for run, outcome in zip(spec.runs(), outcomes):
        location = run_location(s3, infra.bucket, "sweep", run.run_id)
        record = read_json(location, "launch.json")
        record["attempts"][-1].update(outcome)
        write_json(location, "launch.json", record)
    again = runner.launch(env, spec)
    assert sorted(again.gave_up) == sorted(r.run_id for r in spec.runs()[:2])
    assert [x["run_id"] for x in again.launched] == [spec.runs()[2].run_id]


def test_teardown_leaves_nothing_running(env, ec2, spec):
    runner.launch(env, spec)
    other = bound_spec(spec_dict(campaign="other", matrix={"instance_type": ["m5.large"], "batch_size": [3]}))
    runner.launch(env, other)
    [summary] = [s for s in runner.teardown(env, "sweep") if s.backend == "ec2"]
    assert len(summary.stopped) == 6
    assert campaign_instances(ec2, "sweep", LIVE_STATES) == []
    assert len(campaign_instances(ec2, "other", LIVE_STATES)) == 1  # other campaigns untouched
    requests = ec2.describe_spot_instance_requests(
        Filters=[{"Name": f"tag:{CAMPAIGN_TAG}", "Values": ["sweep"]}, {"Name": "state", "Values": ["open", "active"]}])
    assert requests["SpotInstanceRequests"] == []


def test_teardown_cancels_open_spot_requests(env, ec2):
    ec2.request_spot_instances(
        InstanceCount=1, LaunchSpecification={"ImageId": "ami-12c6146b", "InstanceType": "c5.xlarge"},
        TagSpecifications=[{"ResourceType": "spot-instances-request", "Tags": [{"Key": CAMPAIGN_TAG, "Value": "sweep"}]}])
    [summary] = [s for s in runner.teardown(env, "sweep") if s.backend == "ec2"]
    assert len(summary.cancelled) == 1


def test_status_rows_show_cost_so_far(env, spec):
    runner.launch(env, spec)
    rows = runner.status_rows(env, "sweep")
    assert [r["state"] for r in rows] == ["running"] * 6, rows
    assert all(r["cost_usd"] > 0 and r["live"] for r in rows)


def test_local_repositories_are_refused_on_aws(env, workloads_repo):
    spec = bound_spec(spec_dict(repo=str(workloads_repo)))
    with pytest.raises(TrainfleetInputError, match="local repository: only the embedded default"):
        runner.launch(env, spec)


def test_not_deployed_is_a_clear_error(ssm):
    with pytest.raises(TrainfleetInputError, match="not deployed.*cdk deploy"):
        resolve_infrastructure(ssm)


def test_missing_bucket_is_a_clear_error(env, ec2, infra, spec):
    from dataclasses import replace

    env.__dict__["infra"] = replace(infra, bucket="gone")
    with pytest.raises(TrainfleetInputError, match="bucket 'gone' is not reachable"):
        runner.launch(env, spec)
    assert campaign_instances(ec2, "sweep") == []


def _client_error(code: str):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": f"{code} (test)"}}, "RunInstances")


def test_no_capacity_in_one_az_tries_the_next(env, ec2, infra, monkeypatch):
    spec = bound_spec(spec_dict(matrix={"instance_type": ["c5.xlarge"], "batch_size": [3]}))
    real, tried = ec2.run_instances, []

    def first_az_full(**kwargs):
        tried.append(kwargs["SubnetId"])
        if len(tried) == 1:
            raise _client_error("InsufficientInstanceCapacity")
        return real(**kwargs)

    monkeypatch.setattr(env.client("ec2"), "run_instances", first_az_full)
    summary = runner.launch(env, spec)
    assert len(summary.launched) == 1 and summary.refused == []
    assert tried[0] != tried[1] and summary.launched[0]["subnet"] == tried[1]


def _failing_run_instances(env, monkeypatch, code: str, when=lambda kwargs: True) -> list[dict]:
    """run_instances raises `code` (as EC2 would) for the calls `when` selects; records every call."""
    real, calls = env.client("ec2").run_instances, []

    def run_instances(**kwargs):
        calls.append(kwargs)
        if when(kwargs):
            raise _client_error(code)
        return real(**kwargs)

    monkeypatch.setattr(env.client("ec2"), "run_instances", run_instances)
    return calls


def _is_spot(kwargs) -> bool:
    return any(t["ResourceType"] == "spot-instances-request" for t in kwargs["TagSpecifications"])


@pytest.mark.parametrize("code", ["VcpuLimitExceeded", "MaxSpotInstanceCountExceeded", "InstanceLimitExceeded"])
def test_a_quota_error_stops_the_launch_and_names_the_quota_to_raise(env, ec2, s3, infra, monkeypatch, code):
    spec = bound_spec(spec_dict(matrix={"instance_type": ["c5.xlarge", "g4dn.xlarge"], "batch_size": [3, 5]}))
    calls = _failing_run_instances(env, monkeypatch, code, lambda kw: kw["InstanceType"].startswith("g4dn"))
    summary = runner.launch(env, spec)
    assert [x["instance_type"] for x in summary.launched] == ["c5.xlarge", "c5.xlarge"]
    assert "raise 'All G and VT Spot Instance Requests' in Service Quotas for us-east-1" in summary.stopped
    g4dn = [r.run_id for r in spec.runs() if r.instance_type == "g4dn.xlarge"]
    assert summary.not_started == g4dn
    assert len([c for c in calls if c["InstanceType"] == "g4dn.xlarge"]) == 1  # no other AZ, no second run tried
    first = read_json(run_location(s3, infra.bucket, "sweep", g4dn[0]), "launch.json")
    assert [(a["outcome"], a["cost_usd"]) for a in first["attempts"]] == [("launch_refused", 0.0)]
    assert read_json(run_location(s3, infra.bucket, "sweep", g4dn[1]), "launch.json") is None  # never started
    assert {i["InstanceType"] for i in campaign_instances(ec2, "sweep", LIVE_STATES)} == {"c5.xlarge"}
    message = runner.stop_message(summary)
    assert "\n" not in message and g4dn[1] in message


def test_quota_names_follow_the_instance_class_and_market():
    from instance_benchmarks.backends.ec2.instances import vcpu_quota_name

    assert vcpu_quota_name("g6e.xlarge", "spot") == "All G and VT Spot Instance Requests"
    assert vcpu_quota_name("p4d.24xlarge", "spot") == "All P4, P3 and P2 Spot Instance Requests"
    assert vcpu_quota_name("p5.48xlarge", "spot") == "All P5 Spot Instance Requests"
    assert vcpu_quota_name("c5.xlarge", "spot") == "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"
    assert vcpu_quota_name("g5.xlarge", "on-demand") == "Running On-Demand G and VT instances"
    assert vcpu_quota_name("t3.medium", "on-demand") == "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"


@pytest.mark.parametrize("code, tries", [("InsufficientInstanceCapacity", 2), ("InsufficientCapacity", 2),
                                          ("SpotMaxPriceTooLow", 1)])
def test_no_capacity_in_any_az_launches_the_specs_fallback(env, ec2, s3, infra, monkeypatch, code, tries):
    spec = bound_spec(spec_dict(fallback={"market": "on-demand"}, matrix={"instance_type": ["c5.xlarge"], "batch_size": [3]}))
    calls = _failing_run_instances(env, monkeypatch, code, _is_spot)
    summary = runner.launch(env, spec)
    assert len([c for c in calls if _is_spot(c)]) == tries  # every AZ, unless the price is the problem
    assert [(x["market"], x["outcome"]) for x in summary.launched] == [("on-demand", "launched")]
    assert summary.stopped is None and [r["kind"] for r in summary.refused] == ["capacity"]
    record = read_json(run_location(s3, infra.bucket, "sweep", spec.runs()[0].run_id), "launch.json")
    assert [(a["market"], a["outcome"]) for a in record["attempts"]] == [("spot", "launch_refused"), ("on-demand", "launched")]
    [instance] = campaign_instances(ec2, "sweep", LIVE_STATES)
    assert instance.get("InstanceLifecycle") != "spot"


def test_no_capacity_without_fallback_is_recorded_and_the_other_runs_go_on(env, ec2, s3, infra, monkeypatch):
    spec = bound_spec(spec_dict(matrix={"instance_type": ["g4dn.xlarge", "c5.xlarge"], "batch_size": [3]}))
    _failing_run_instances(env, monkeypatch, "InsufficientInstanceCapacity", lambda kw: kw["InstanceType"] == "g4dn.xlarge")
    summary = runner.launch(env, spec)
    assert [x["instance_type"] for x in summary.launched] == ["c5.xlarge"] and summary.stopped is None
    [refused] = summary.refused
    assert "InsufficientInstanceCapacity" in refused["error"] and "tried us-east-1a, us-east-1b" in refused["error"]


def test_a_type_not_offered_in_the_stacks_azs_stops_the_launch(env, ec2, monkeypatch):
    spec = bound_spec(spec_dict(matrix={"instance_type": ["g6e.xlarge"], "batch_size": [3, 5]}))
    _failing_run_instances(env, monkeypatch, "Unsupported")
    summary = runner.launch(env, spec)
    assert summary.launched == [] and len(summary.not_started) == 2
    assert "g6e.xlarge is not offered in the stack's AZs (us-east-1a, us-east-1b)" in summary.stopped


def test_each_type_boots_its_images_template_and_t_types_use_standard_credits(env, ec2, infra, monkeypatch):
    spec = bound_spec(spec_dict(matrix={"instance_type": ["c5.xlarge", "g5.xlarge", "t3.medium"], "batch_size": [3]}))
    calls = _failing_run_instances(env, monkeypatch, "never", lambda kw: False)
    runner.launch(env, spec)
    by_type = {c["InstanceType"]: c for c in calls}
    assert by_type["c5.xlarge"]["LaunchTemplate"]["LaunchTemplateId"] == infra.template_for("spot", "cpu")
    assert by_type["g5.xlarge"]["LaunchTemplate"]["LaunchTemplateId"] == infra.template_for("spot", "gpu")
    assert infra.template_for("spot", "cpu") != infra.template_for("spot", "gpu")
    assert by_type["t3.medium"]["CreditSpecification"] == {"CpuCredits": "standard"}
    assert "CreditSpecification" not in by_type["c5.xlarge"]


def test_the_budget_counts_the_fallback_when_it_costs_more(env, ec2):
    """c5.large spot may fall back to on-demand g5.xlarge: the worst case is the g5's price."""
    spec = bound_spec(spec_dict(budget_usd=0.5, fallback={"instance_type": "g5.xlarge", "market": "on-demand"},
                                matrix={"instance_type": ["c5.large"], "batch_size": [3]}))
    with pytest.raises(TrainfleetInputError, match=r"worst case \$0\.5[0-9] for 1 runs"):
        runner.launch(env, spec)
    assert campaign_instances(ec2, "sweep") == []


def test_a_launcher_killed_during_run_instances_is_resolved(env, ec2, s3, infra, monkeypatch):
    """The attempt is written as `launching` before the call; the next launch adopts what started."""
    spec = bound_spec(spec_dict(matrix={"instance_type": ["c5.xlarge"], "batch_size": [3, 5]}))
    real = ec2.run_instances
    calls = []

    def die_after_the_first(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            real(**kwargs)      # started in EC2 ...
        raise KeyboardInterrupt  # ... and the launcher dies before recording it (the second never started)

    monkeypatch.setattr(env.client("ec2"), "run_instances", die_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        runner.launch(env, spec)
    with pytest.raises(KeyboardInterrupt):
        runner.launch(env, spec)
    monkeypatch.setattr(env.client("ec2"), "run_instances", real)
    again = runner.launch(env, spec)
    started = {tag(i, RUN_TAG) for i in campaign_instances(ec2, "sweep", LIVE_STATES)}
    assert len(started) == 2  # the adopted instance and one new launch, never a duplicate
    outcomes = {r.run_id: [a["outcome"] for a in read_json(run_location(s3, infra.bucket, "sweep", r.run_id),
                                                           "launch.json")["attempts"]] for r in spec.runs()}
    assert sorted(outcomes.values()) == [["launched"], ["not_launched", "launched"]]
    assert len(again.launched) == 1 and len(again.skipped_live) == 1


def test_a_broken_record_is_reported_for_its_run_and_the_others_go_on(env, ec2, s3, infra):
    """A truncated result.json and a launch.json holding a list (anything with write access to the bucket
    can do that): status marks those runs unreadable, never relaunches them, and reports the rest."""
    from instance_benchmarks.campaigns.report import build_report

    spec = bound_spec(spec_dict(matrix={"instance_type": ["c5.xlarge"], "batch_size": [3, 5, 7]}))
    runner.launch(env, spec)
    runner.teardown(env, "sweep")
    fine, truncated, listed = (r.run_id for r in spec.runs())
    run_location(s3, infra.bucket, "sweep", truncated).write_bytes("result.json", b'{"status": "compl')
    run_location(s3, infra.bucket, "sweep", listed).write_bytes("launch.json", b"[1, 2]")
    rows = {row["run_id"]: row for row in runner.status_rows(env, "sweep")}
    assert rows[fine]["status"] == "torn down" and rows[fine]["cost_usd"] > 0
    assert rows[truncated]["status"].startswith("unreadable: result.json is not JSON")
    assert rows[truncated]["cost_usd"] > 0  # its readable launch.json still counts (status, budget)
    assert rows[listed]["status"] == "unreadable: launch.json holds a list, not an object"
    again = runner.launch(env, spec)
    assert [x["run_id"] for x in again.launched] == [fine]  # relaunched after teardown; the broken ones never
    assert sorted(u.split(":")[0] for u in again.unreadable) == sorted([truncated, listed])
    report = build_report(s3, infra.bucket, "sweep")
    outcomes = {row["run_id"]: row["last_outcome"] for row in report.incomplete}
    assert outcomes[listed].startswith("unreadable: ") and outcomes[truncated].startswith("unreadable: ")


def _failed(attempt: int, exit_code, note=None) -> dict:
    entry = {"attempt": attempt, "backend": "ec2", "outcome": "failed", "exit_code": exit_code, "cost_usd": 0.001,
             "instance_type": "c5.xlarge", "market": "spot", "price": {"usd_per_hour": 0.1}}
    return {**entry, **({"note": note} if note else {})}


def test_a_run_that_fails_the_same_way_twice_is_not_retried(env, s3, infra):
    """Retries are for interruptions and capacity: a failed script gets one more attempt, unless it failed
    on its input; two failures with the same exit status and last log line end the run."""
    spec = bound_spec(spec_dict(max_attempts=5, matrix={"instance_type": ["c5.xlarge"], "batch_size": [3, 5, 7, 10, 12]}))
    runner.launch(env, spec)
    runner.teardown(env, "sweep")
    same_note, other_note, same_log, other_log, once = (r.run_id for r in spec.runs())
    histories = {same_note: [_failed(1, None, "pip install failed"), _failed(2, None, "pip install failed")],
                 other_note: [_failed(1, None, "git fetch failed"), _failed(2, None, "pip install failed")],
                 same_log: [_failed(1, 1), _failed(2, 1)], other_log: [_failed(1, 1), _failed(2, 1)],
                 once: [_failed(1, 1)]}
    logs = {same_log: ["RuntimeError: CUDA out of memory"] * 2,
            other_log: ["ValueError: bad batch", "ConnectionResetError: peer"], once: ["whatever"]}
    for run_id, attempts in histories.items():
        location = run_location(s3, infra.bucket, "sweep", run_id)
        record = read_json(location, "launch.json")
        record["attempts"] = attempts
        write_json(location, "launch.json", record)
        for number, line in enumerate(logs.get(run_id, [])[-len(attempts):], start=1):
            location.child(f"logs/attempt-{number}").write_bytes("script.log", f"epoch 1\n{line}\n\n".encode())
    again = runner.launch(env, spec)
    assert sorted(again.gave_up) == sorted([same_note, same_log])
    assert "failed the same way twice (exit None: pip install failed)" in again.why_given_up[same_note]
    assert "RuntimeError: CUDA out of memory" in again.why_given_up[same_log]
    assert sorted(x["run_id"] for x in again.launched) == sorted([other_note, other_log, once])
    assert {x["attempt"] for x in again.launched if x["run_id"] != once} == {3}


def test_a_torn_down_run_is_relaunched_but_bad_input_never(env, s3, infra):
    spec = bound_spec(spec_dict(max_attempts=3, matrix={"instance_type": ["c5.xlarge"], "batch_size": [3, 5]}))
    runner.launch(env, spec)
    runner.teardown(env, "sweep")
    torn, bad = (r.run_id for r in spec.runs())
    location = run_location(s3, infra.bucket, "sweep", bad)
    record = read_json(location, "launch.json")
    record["attempts"] = [_failed(1, 2)]
    write_json(location, "launch.json", record)
    again = runner.launch(env, spec)
    assert [x["run_id"] for x in again.launched] == [torn] and again.gave_up == [bad]
    assert again.why_given_up[bad].startswith("failed on its input (exit 2)")


def test_a_no_metrics_attempt_is_not_retried_and_its_note_is_the_failure_line(env, s3, infra):
    note = "no metrics: no output line matched metric_definitions (val_mse: regex 'val_mse=([0-9.]+)') in 300s"
    spec, run, _ = torn_down_run(env, infra.bucket, outcome="no metrics", exit_code=-15, note=note)
    again = runner.launch(env, spec)
    assert again.launched == [] and again.why_given_up == {run.run_id: "no metrics: not retried"}
    [failure] = runner.failure_report(env, "sweep")
    assert runner.failure_lines(failure)[0] == f"{run.run_id}: no metrics, exit -15 (attempt 1 of 1): {note}"


@pytest.mark.parametrize("planted", [b"", b"not a wheel", None], ids=["empty", "wrong bytes", "longer"])
def test_a_planted_wheel_at_the_agent_key_is_replaced(env, s3, infra, spec, planted):
    """The wheel's key is predictable (its SHA-256 is the sources'): what is there is read back and replaced
    when its bytes differ, so the instances' checksum passes (before, an existing key was never uploaded)."""
    from instance_benchmarks.backends.packaging import build_wheel, publish_wheel

    wheel = build_wheel()
    good = wheel.path.read_bytes()
    key = publish_wheel(s3, infra.bucket, "other", wheel).replace("campaigns/other/", "campaigns/sweep/")
    assert wheel.sha256 in key  # the full content hash
    body = good + b"trailing" if planted is None else planted
    s3.put_object(Bucket=infra.bucket, Key=key, Body=body, Metadata={"sha256": wheel.sha256})
    runner.launch(env, spec)
    record = read_json(run_location(s3, infra.bucket, "sweep", spec.runs()[0].run_id), "launch.json")
    assert record["attempts"][0]["agent_wheel"] == {"key": key, "sha256": wheel.sha256}
    assert s3.get_object(Bucket=infra.bucket, Key=key)["Body"].read() == good


def test_an_instance_ended_before_it_ran_is_not_billed(env, s3, infra, monkeypatch):
    """EC2 bills from the running state: an instance a teardown ends while still pending (on the embedded
    default: still queued, never booted) is recorded torn down at $0, not at the 60-second minimum."""
    spec = bound_spec(spec_dict(matrix={"instance_type": ["c5.xlarge"], "batch_size": [3, 5]}))
    queued = spec.runs()[1].run_id
    real = env.started_at
    monkeypatch.setattr(env, "started_at", lambda instance: None if tag(instance, RUN_TAG) == queued else real(instance))
    runner.launch(env, spec)
    runner.teardown(env, "sweep")
    for run in spec.runs():
        [attempt] = read_json(run_location(s3, infra.bucket, "sweep", run.run_id), "launch.json")["attempts"]
        assert attempt["outcome"] == "torn down"
        if run.run_id == queued:
            assert (attempt["cost_usd"], attempt["billed_seconds"]) == (0.0, 0) and "before it ran" in attempt["note"]
        else:
            assert attempt["cost_usd"] > 0 and attempt["billed_seconds"] >= 60


def test_ec2_bills_from_running_not_pending():
    from instance_benchmarks.environment import Environment

    launched = object()
    assert Environment().started_at({"State": {"Name": "pending"}, "LaunchTime": launched}) is None
    assert Environment().started_at({"State": {"Name": "running"}, "LaunchTime": launched}) is launched
