"""Records in the bucket are read through their models: what the issue-24 audit found in hostile buckets (`{}`,
a price that is a string, a run id that is not its folder's, JSON nested 100,000 deep) is one line per run,
and the other runs still read."""
from __future__ import annotations

import json

import pytest

from instance_benchmarks.campaigns.report import build_report
from instance_benchmarks.campaigns.store import campaign_document, load_run_records, record_campaign, run_location
from instance_benchmarks.core.errors import TrainfleetInputError
from training_scripts.storage import S3Location

DATA = __import__("pathlib").Path(__file__).parents[1] / "measure" / "data"
DEEP = ("[" * 100_000 + "]" * 100_000).encode()


def _put(s3, bucket, run_id, name, body) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    run_location(s3, bucket, "sweep", run_id).write_bytes(name, data)


@pytest.fixture
def hostile(s3, bucket):
    old = json.loads((DATA / "result-v1-ec2.json").read_text())
    _put(s3, bucket, "r1", "launch.json", {"attempts": [{"attempt": 1, "outcome": "completed", "instance_id": "i-1",
                                                         "instance_seconds": 600.25, "billed_seconds": 601}]})
    _put(s3, bucket, "r1", "result.json", old)                                    # schema 1: still reads
    _put(s3, bucket, "r2", "launch.json", {})                                     # {}: no attempts yet
    _put(s3, bucket, "r3", "launch.json", {"attempts": [{"attempt": 1, "price": "0.45"}]})
    _put(s3, bucket, "r4", "launch.json", {"attempts": []})
    _put(s3, bucket, "r4", "result.json", {**old, "run_id": "r9"})                 # another run's result
    _put(s3, bucket, "r5", "launch.json", DEEP)
    _put(s3, bucket, "r6", "result.json", {**old, "run_id": "r6", "price": "cheap"})
    return bucket


def test_each_hostile_record_is_one_line_and_the_others_still_read(s3, hostile):
    records = {r["run_id"]: r for r in load_run_records(s3, hostile, "sweep")}
    assert records["r1"]["status"] == "complete" and records["r1"]["result"]["host"]["label"] == "ec2 g5.xlarge"
    assert records["r1"]["launch"]["attempts"][0]["resource"] == "i-1"  # schema-1 attempts gain the neutral keys
    assert records["r1"]["launch"]["attempts"][0]["run_seconds"] == 600.25
    assert records["r2"]["status"] == "incomplete" and records["r2"]["launch"] == {}
    unreadable = {run_id: r["unreadable"] for run_id, r in records.items() if r.get("unreadable")}
    assert unreadable == {
        "r3": "launch.json: attempts.0.price: Input should be a valid dictionary or instance of Price",
        "r4": "result.json names run 'r9', not 'r4' (its folder)",
        "r5": "launch.json is nested too deep to read",
        "r6": "result.json: price: Input should be a valid dictionary or instance of Price",
    }


def test_the_report_shows_the_readable_runs_of_a_hostile_bucket(s3, hostile):
    S3Location(hostile, "campaigns/sweep", s3).write_bytes("campaign.json", DEEP)
    report = build_report(s3, hostile, "sweep")
    assert [r["run_id"] for r in report.rows] == ["r1"]
    assert report.rows[0]["measured_on"] == "ec2 g5.xlarge" and report.rows[0]["stand_in"] is False


@pytest.mark.parametrize("body", [DEEP, b'{"backends": {"ec2": "spec"}}', b"[]", b"{"])
def test_an_unreadable_campaign_document_is_kept_and_never_overwritten(s3, bucket, body):
    location = S3Location(bucket, "campaigns/sweep", s3)
    location.write_bytes("campaign.json", body)
    assert campaign_document(s3, bucket, "sweep") == {}  # there (a launched campaign), its specs unknown
    spec = type("Spec", (), {"campaign": "sweep", "backend": "ec2", "region": "us-east-1", "to_dict": lambda self: {}})()
    with pytest.raises(TrainfleetInputError, match=r"^campaign sweep: campaign.json[ :].*; nothing was launched$"):
        record_campaign(s3, bucket, spec, {})
    assert location.read_bytes("campaign.json") == body


def test_a_stand_in_result_of_schema_1_is_reported_as_measured_on_its_host(s3, bucket):
    old = json.loads((DATA / "result-v1-local.json").read_text())
    _put(s3, bucket, "r1", "launch.json", {"attempts": [{"attempt": 1, "outcome": "completed"}]})
    _put(s3, bucket, "r1", "result.json", old)
    [row] = build_report(s3, bucket, "sweep").rows
    assert row["measured_on"] == "local builder (2 CPUs) for c5.xlarge" and row["stand_in"] is True
    assert row["backend"] == "ec2"


def test_hostile_metric_lines_are_skipped_or_trimmed_and_the_curves_still_read(s3, bucket):
    """metrics.jsonl and progress.json are the script's: a line nested 100,000 deep, not JSON, a list, NaN,
    a nested value, a 10 KB name: that line (or value) is skipped, never a traceback; the rest reads."""
    from instance_benchmarks.campaigns.report import _history
    from instance_benchmarks.campaigns.store import attempt_logs, read_progress

    lines = [b'{"step": 1, "loss": 0.9}', DEEP, b"not json", b"[1, 2]", b'{"step": 2, "loss": NaN, "lr": 0.1}',
             b'{"step": 3, "loss": 0.5, "extra": {"a": [1]}, "' + b"k" * 10_000 + b'": 1, "big": ' + b"9" * 400 + b"}",
             b'{"step": 4, "loss": Infinity, "note": "' + b"x" * 300 + b'"}']
    _put(s3, bucket, "m1", "metrics.jsonl", b"\n".join(lines))
    assert _history(s3, bucket, "sweep", "m1") == [{"step": 1, "loss": 0.9}, {"step": 2, "lr": 0.1},
                                                  {"step": 3, "loss": 0.5}, {"step": 4}]
    logs = attempt_logs(s3, bucket, "sweep", "m1", 1)
    logs.write_bytes("progress.json", b'{"latest": {"step": 7, "loss": NaN, "acc": 0.8, "x": [1]}, "records": 7, '
                                      b'"at": "2026-12-08T01:00:00+00:00"}')
    assert read_progress(s3, bucket, "sweep", "m1", 1) == {"latest": {"step": 7, "acc": 0.8}, "records": 7,
                                                          "at": "2026-12-08T01:00:00+00:00"}
    logs.write_bytes("progress.json", b'{"latest": {}, "records": "7", "at": ["x"]}')
    assert read_progress(s3, bucket, "sweep", "m1", 1) == {"latest": {}}
    for broken in (DEEP, b"{}", b'{"latest": 3}', b"\xff\xfe", b"[]"):
        logs.write_bytes("progress.json", broken)
        assert read_progress(s3, bucket, "sweep", "m1", 1) is None, broken


def test_a_metric_value_is_kept_only_as_a_bounded_scalar_of_its_own_type():
    """An int just past 64 bits is dropped (not taken as a float), a bool stays a bool, None and lists go."""
    from instance_benchmarks.measure.record_model import metric_line

    line = {"ok": True, "n": 2**63 - 1, "over": 2**63, "under": -2**63, "f": 0.5, "none": None, "list": [1], "s": "a"}
    assert metric_line(line) == {"ok": True, "n": 2**63 - 1, "f": 0.5, "s": "a"}
