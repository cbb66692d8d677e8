"""The one run record: its JSON Schema in the repository, its builder, its migration from schema 1 (records
written by the builders before it, in data/), and its models turning hostile records into one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from instance_benchmarks.measure.record import (
    SCHEMA_VERSION, build_result, catalog_peak, host_facts, migrate_attempt, migrate_result, parse_host, spot_savings,
)
from instance_benchmarks.measure.record_model import (
    RESULT_SCHEMA, RecordError, RunRecord, load_json, parse_document, result_schema,
)

DATA = Path(__file__).with_name("data")
PRICE = {"usd_per_hour": 0.45, "on_demand_usd_per_hour": 1.0, "market": "spot"}


def _v1(name: str) -> dict:
    return json.loads((DATA / f"result-v1-{name}.json").read_text())


def _attempt(n: int, **fields) -> dict:
    return {"attempt": n, "outcome": "completed", "instance_type": "g5.xlarge", "market": "spot", "price": PRICE,
            "run_seconds": 600.0, "billed_seconds": 600, "cost_usd": 600 * 0.45 / 3600, "setup_seconds": 30.0,
            "boot_seconds": 40.0, **fields}


def test_the_checked_in_schema_is_the_models():
    assert json.loads(RESULT_SCHEMA.read_text()) == result_schema(), \
        "regenerate instance_benchmarks/measure/result.schema.json from RunRecord.model_json_schema()"


@pytest.mark.parametrize("backend", [{"name": "ec2"}, {"name": "sagemaker", "job_name": "tf-r1-a2-x",
                                                       "timing_source": "describe_training_job"}])
def test_what_the_one_builder_writes_the_model_reads(backend):
    attempts = [_attempt(1, outcome="interrupted", cost_usd=0.01), _attempt(2)]
    result = build_result(campaign="sweep", run_id="r1", backend=backend, attempts=attempts,
                          host=host_facts("ec2 g5.xlarge", peak_tflops=31.2, peak_source="catalog g5.xlarge fp32"),
                          figures={"samples_per_s": 10.0, "mfu": 0.1}, hyperparameters={"lr": 0.1},
                          train_artifacts={"model.pt": "a" * 64}, final={"loss": 0.1}, precision="fp32",
                          workload=None, code="c" * 40)
    record = RunRecord.model_validate(json.loads(json.dumps(result)))
    assert (record.schema_version, record.backend.name, record.host.peak_tflops) == (SCHEMA_VERSION, backend["name"], 31.2)
    assert (result["attempts"], result["interruptions"], result["run_seconds"], result["billable_seconds"]) == (2, 1, 1200.0, 1200.0)
    assert result["cost_usd"] == pytest.approx(0.01 + 600 * 0.45 / 3600)
    assert result["setup_cost_usd"] == pytest.approx(60.0 * 0.45 / 3600)
    assert "workload" not in result and result["code"] == "c" * 40  # a fact not known is left out
    assert parse_document("result.json", result, run_id="r1") == result


def test_spot_savings_read_the_same_for_both_ways_of_billing():
    ec2 = [{"price": {"usd_per_hour": 0.3, "on_demand_usd_per_hour": 1.0}, "run_seconds": 59.5, "billed_seconds": 60,
            "cost_usd": 60 * 0.3 / 3600}]  # the spot price for every billed second
    sagemaker = [{"price": {"usd_per_hour": 1.408}, "run_seconds": 100.0, "billed_seconds": 30.0,
                  "cost_usd": 30 * 1.408 / 3600}]  # its one price for fewer (billable) seconds
    assert spot_savings(ec2) == pytest.approx(0.7)
    assert spot_savings(sagemaker) == pytest.approx(0.7)
    assert spot_savings([]) is None


def test_the_builder_refuses_a_backend_without_its_name():
    with pytest.raises(ValueError, match="backend is a sub-record"):
        build_result(campaign="c", run_id="r", backend="ec2", attempts=[], host=host_facts("x"), figures={},
                     hyperparameters=None, train_artifacts={}, final=None)


def test_a_run_is_measured_against_the_peak_of_the_precision_it_recorded():
    from instance_benchmarks.catalog import load_catalog

    a100 = load_catalog().get("p4d.24xlarge").peaks()
    assert (catalog_peak(a100, "fp32"), catalog_peak(a100, "tf32"), catalog_peak(a100, "bf16")) == \
        (156.0, 1248.0, 2496.0)  # 8 x 19.5, 8 x 156, 8 x 312 dense
    legacy = {"fp32": 19.5, "fp16": 312.0}  # peaks recorded before tf32 was
    assert catalog_peak(legacy, "bf16") == 312.0 and catalog_peak(legacy, "tf32") is None
    assert catalog_peak(legacy, "fp16", nodes=2) == 624.0 and catalog_peak(None, "fp32") is None


def test_an_ec2_record_of_schema_1_reads_as_schema_2():
    old = _v1("ec2")
    assert "schema_version" not in old and old["backend"] == "ec2" and old["measured_on"] == "ec2"
    new = parse_document("result.json", old, run_id="r1")
    assert new["schema_version"] == SCHEMA_VERSION and new["backend"] == {"name": "ec2"}
    assert new["host"] == {"label": "ec2 g5.xlarge", "stand_in": False, "peak_tflops": 31.2,
                           "peak_source": "catalog g5.xlarge fp32"}
    assert new["run_seconds"] == old["instance_seconds"] and new["billable_seconds"] == old["billable_seconds"]
    assert not {"measured_on", "instance_seconds", "peak_tflops", "peak_source"} & set(new)
    kept = set(old) - {"backend", "host", "measured_on", "instance_seconds", "peak_tflops", "peak_source"}
    assert {k: new[k] for k in kept} == {k: old[k] for k in kept}  # everything else as it was


def test_a_sagemaker_record_of_schema_1_keeps_its_job_in_the_backend_sub_record():
    old = _v1("sagemaker")
    new = parse_document("result.json", old, run_id="sm-r1")
    assert new["backend"] == {"name": "sagemaker", "job_name": old["job_name"], "timing_source": "describe_training_job"}
    assert new["host"]["label"] == "sagemaker ml.g5.xlarge" and new["host"]["stand_in"] is False
    assert (new["run_seconds"], new["billable_seconds"]) == (100.0, 30.0)
    assert not {"job_name", "timing_source", "training_seconds"} & set(new)


def test_a_stand_in_record_of_schema_1_says_so_in_its_host():
    new = migrate_result(_v1("local"))
    assert new["host"] == {"label": "local builder (2 CPUs) for c5.xlarge", "stand_in": True, "peak_tflops": 0.2,
                           "peak_source": "estimated: 1 cores x 3.00 GHz x 64 FLOP/cycle"}
    assert migrate_result(new) is new  # schema 2 is left as it is


def test_old_launch_attempts_gain_the_neutral_keys():
    ec2 = migrate_attempt({"attempt": 1, "instance_id": "i-1", "instance_seconds": 12.5, "billed_seconds": 60})
    sm = migrate_attempt({"attempt": 1, "job_name": "tf-j", "training_seconds": 100.0, "billable_seconds": 30.0})
    assert (ec2["resource"], ec2["run_seconds"], ec2["billed_seconds"]) == ("i-1", 12.5, 60)
    assert (sm["resource"], sm["run_seconds"], sm["billed_seconds"]) == ("tf-j", 100.0, 30.0)
    assert ec2["instance_id"] == "i-1" and sm["job_name"] == "tf-j"  # the backend's own words stay
    assert migrate_attempt({"attempt": 2, "outcome": "launching"}) == {"attempt": 2, "outcome": "launching"}


@pytest.mark.parametrize("name, value, message", [
    ("result.json", {"run_id": 7}, "result.json: run_id: Input should be a valid string"),
    ("result.json", [], "result.json holds a list, not an object"),
    ("result.json", {**_v1("ec2"), "price": "0.45"}, "result.json: price: Input should be a valid dictionary"),
    ("result.json", {**_v1("ec2"), "cost_usd": float("inf")}, "result.json: cost_usd: Input should be a finite number"),
    ("result.json", {**_v1("ec2"), "run_id": "r2"}, "result.json names run 'r2', not 'r1' (its folder)"),
    ("result.json", {**_v1("ec2"), "schema_version": 99}, "result.json has schema_version '99'"),
    ("launch.json", {"attempts": [{"attempt": 1, "price": "cheap"}]}, "launch.json: attempts.0.price: Input should be"),
    ("launch.json", {"attempts": "none"}, "launch.json: attempts: Input should be a valid list"),
    ("launch.json", {"run_id": "other", "attempts": []}, "launch.json names run 'other', not 'r1'"),
    ("campaign.json", {"backends": {"ec2": "x"}}, "campaign.json: backends.ec2: Input should be"),
])
def test_hostile_records_are_one_line_errors(name, value, message):
    with pytest.raises(RecordError) as error:
        parse_document(name, value, run_id="r1")
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_result_that_does_not_name_its_run_is_its_folders():
    assert parse_document("result.json", {}, run_id="r1") == {
        "run_id": "r1", "schema_version": SCHEMA_VERSION, "backend": {"name": "ec2"}, "run_seconds": None,
        "host": {"label": "ec2", "stand_in": False, "peak_tflops": None, "peak_source": None}}
    with pytest.raises(RecordError, match="^result.json: run_id: Field required$"):
        parse_document("result.json", {})


def test_an_empty_launch_or_campaign_document_reads_as_empty():
    assert parse_document("launch.json", {}, run_id="r1") == {}
    assert parse_document("campaign.json", {}) == {}


def test_json_nested_too_deep_is_refused_in_one_line():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RecordError, match=r"^launch.json is nested too deep to read$"):
        load_json(deep, "launch.json")
    with pytest.raises(RecordError, match=r"^result.json is not JSON \("):
        load_json(b"{", "result.json")


def test_host_facts_are_an_object_with_a_label_and_known_keys():
    assert parse_host('{"label": "ec2 c5.xlarge"}', "host.json") == {"label": "ec2 c5.xlarge"}
    for text in ('["x"]', '{"stand_in": true}', '{"label": "x", "gpu": 1}', "{", '{"label": "x", "stand_in": "yes"}',
                 '{"label": "x", "peak_tflops": "fast"}', '{"label": "x", "job_seconds": -1}',
                 '{"label": "x", "launched_at": "yesterday"}', '{"label": "x", "peak_tflops": true}'):
        with pytest.raises(ValueError, match="host.json"):
            parse_host(text, "host.json")


def test_the_agent_builds_the_record_without_pydantic():
    """The agent runs on an instance whose image may hold another pydantic, or none: it imports the stdlib
    builder only (the models are for the readers at home)."""
    import subprocess
    import sys

    code = ("import sys, instance_benchmarks.agent.main, instance_benchmarks.agent.container; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pydantic_core')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
