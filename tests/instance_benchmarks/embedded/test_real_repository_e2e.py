"""A repository used as published, on the embedded default: it runs from a subdirectory, installs its own
requirements, reads data from a relative path, saves with --save and prints plain-text logs shaped like
PyTorch's word-language-model example. trainfleet reads its metrics with regexes, and with a `benchmark`
block trains a slice of each run and predicts the whole job."""
import json
import re

import pytest

from instance_benchmarks import runner
from instance_benchmarks.campaigns.bench_slice import PLAIN_TEXT_MAIN
from instance_benchmarks.campaigns.models import download_run
from instance_benchmarks.campaigns.store import read_json, run_location
from instance_benchmarks.embedded.environment import EmbeddedEnvironment
from tests.instance_benchmarks.conftest import bound_spec, make_git_repo, spec_dict

MAIN = PLAIN_TEXT_MAIN  # the slice benchmark's miniature of PyTorch's word_language_model/main.py
DEFINITIONS = [
    {"name": "epoch", "regex": r"\| epoch +(\d+) "},
    {"name": "step", "regex": r"\| +(\d+)/ *\d+ batches"},
    {"name": "loss", "regex": r"\| loss +([0-9.]+)"},
    {"name": "val_loss", "regex": r"valid loss +([0-9.]+)"},
]
RUN = 'python main.py --epochs "$epochs" --batch_size "$batch_size" --delay "$delay" --save "$TRAINFLEET_OUTPUT_DIR/model.pt"\n'


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    path = tmp_path_factory.mktemp("published") / "examples"
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * 60)
    commit = make_git_repo(path, {"README.md": "examples\n", "word_language_model/main.py": MAIN,
                                  "word_language_model/requirements.txt": "torch\n",
                                  "word_language_model/data/tiny/train.txt": text})
    return path, commit


@pytest.fixture(scope="module")
def embedded():
    with EmbeddedEnvironment.start(log=lambda *_: None) as env:
        yield env


def _spec(repository, **changes):
    path, _ = repository
    return bound_spec(spec_dict(**{
        "campaign": "wlm", "workload": None, "repo": str(path), "ref": "main", "workdir": "word_language_model",
        "setup": "pip install -r requirements.txt\n", "run": RUN, "metric_definitions": DEFINITIONS,
        "target": {"metric": "val_loss", "value": 100.0}, "hyperparameters": {"epochs": 2, "delay": 0.0},
        "matrix": {"instance_type": ["c5.xlarge", "m5.large"], "batch_size": [8, 16]}, **changes}))


def test_an_unmodified_repository_with_plain_text_logs(embedded, repository, tmp_path):
    _, commit = repository
    spec = _spec(repository)
    outcome = runner.run_to_report(embedded, [spec], out=tmp_path, log=lambda *_: None)
    report = outcome["report"]
    assert len(report.rows) == 4 and report.incomplete == [] and outcome["left_running"] == []
    s3, bucket = embedded.client("s3"), embedded.infra.bucket
    for row in report.rows:
        assert row["final_metric"] is not None and row["sec_per_step"] > 0  # val_loss and steps from the regexes
        assert row["code"] == commit and row["setup_seconds"] > 0
        location = run_location(s3, bucket, "wlm", row["run_id"])
        history = [json.loads(line) for line in location.read_bytes("metrics.jsonl").splitlines()]
        assert {"epoch", "step", "loss"} <= set(history[0]) and any("val_loss" in h for h in history)
        assert b"pip install -r requirements.txt" not in location.child("logs/attempt-1").read_bytes("script.log")
    assert report.higher_is_better is False  # a loss: lower is better, so the best model has the lowest
    files = download_run(s3, bucket, "wlm", report.rows[0]["run_id"], tmp_path / "model")
    assert set(files) == {"model.pt"}
    assert (tmp_path / "best-model" / "model.pt").exists()


def test_a_benchmark_slice_predicts_the_whole_job(embedded, repository, tmp_path):
    """Each run trains ~15 s of a 40-epoch job (slow steps: 10 ms each), is stopped cleanly, and predicts it.
    (15 s, not less: on a loaded 2-core CI machine starting torch alone can take several seconds.)"""
    spec = _spec(repository, campaign="wlm-slice", target=None, hyperparameters={"epochs": 40, "delay": 0.01},
                 benchmark={"max_minutes": 0.25, "total_steps": 40 * 67, "warmup_steps": 10},
                 matrix={"instance_type": ["c5.xlarge", "m5.large"], "batch_size": [8]})
    outcome = runner.run_to_report(embedded, [spec], out=tmp_path, log=lambda *_: None)
    report = outcome["report"]
    assert len(report.rows) == 2 and report.incomplete == [] and outcome["left_running"] == []
    s3, bucket = embedded.client("s3"), embedded.infra.bucket
    for row in report.rows:
        result = read_json(run_location(s3, bucket, "wlm-slice", row["run_id"]), "result.json")
        [attempt] = read_json(run_location(s3, bucket, "wlm-slice", row["run_id"]), "launch.json")["attempts"]
        assert attempt["outcome"] == "completed" and attempt["benchmark_slice"] is True
        assert attempt["script_seconds"] < 30  # stopped after its slice, far short of 40 epochs
        prediction = result["prediction"]
        assert prediction["unit"] == "step" and prediction["measured_units"] > 0
        assert 0.005 < prediction["sec_per_unit"] < 1.0  # at least the 10 ms sleep per step
        assert prediction["est_train_seconds"] > attempt["script_seconds"]
        assert prediction["est_usd_low"] <= prediction["est_usd"] <= prediction["est_usd_high"]
        assert row["est_usd"] == pytest.approx(prediction["est_usd"])
        assert row["pred_cv"] == prediction["cv"] and prediction["cv"] >= 0  # the slice's spread, in the report
        assert attempt["host_load"]["run_cpus"] > 0 and row["host_other_cpus"] == attempt["host_load"]["other_cpus"]
    markdown = (tmp_path / "report.md").read_text()
    assert "## Predicted full job" in markdown and "Cheapest predicted:" in markdown


def test_hyperparameters_reach_run_commands_as_literal_variables(embedded, repository, tmp_path):
    values = ["$(touch /tmp/trainfleet-pwned-run)", "; rm -rf / #", "`id`"]
    spec = _spec(repository, campaign="wlm-literal", target=None, setup=None, metric_definitions=None,
                 run='printf %s "$note" > "$TRAINFLEET_OUTPUT_DIR/note.txt"\n', hyperparameters={},
                 matrix={"instance_type": ["c5.xlarge"], "note": values})
    runner.run_to_report(embedded, [spec], out=tmp_path, log=lambda *_: None)
    s3, bucket = embedded.client("s3"), embedded.infra.bucket
    seen = sorted(run_location(s3, bucket, "wlm-literal", r.run_id).child("train").read_bytes("note.txt").decode()
                  for r in spec.runs())
    assert seen == sorted(values)


def test_a_regex_that_never_matches_ends_the_run_as_no_metrics_once(embedded, repository, tmp_path):
    """`val_mse=([0-9.]+)` against a script that prints `valid loss 5.1`: the attempt is stopped after the grace
    period (6 s here, not the 40 epochs), not retried although max_attempts is 3, and its failure line names
    the regex and quotes a line it did not match."""
    spec = _spec(repository, campaign="wlm-silent", target=None, max_attempts=3, metrics_grace_minutes=0.1,
                 metric_definitions=[{"name": "val_mse", "regex": r"val_mse=([0-9.]+)"}],
                 hyperparameters={"epochs": 40, "delay": 0.01}, matrix={"instance_type": ["c5.xlarge"], "batch_size": [8]})
    outcome = runner.run_to_report(embedded, [spec], out=tmp_path, log=lambda *_: None)
    report = outcome["report"]
    assert report.rows == [] and [r["last_outcome"] for r in report.incomplete] == ["no metrics"]
    [run] = spec.runs()
    [attempt] = read_json(run_location(embedded.client("s3"), embedded.infra.bucket, "wlm-silent", run.run_id),
                          "launch.json")["attempts"]
    assert attempt["script_seconds"] < 60 and attempt["stop_reason"].startswith("no metrics")
    [failure] = runner.failure_report(embedded, "wlm-silent")
    line = runner.failure_lines(failure)[0]
    assert line.startswith(f"{run.run_id}: no metrics") and "val_mse: regex 'val_mse=([0-9.]+)'" in line
    assert re.search(r"e\.g\. '\| (end of )?epoch .*' did not match", line)
