"""Fail fast on silence: a script expected to print metrics that prints none within the grace period (or by its
end, or the end of its benchmark slice) ends as `no metrics`, with a note naming the regex and a line it did
not match. Fake scripts stand in for the user's."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from instance_benchmarks.agent.main import attempt_outcome, silence_note, silent, start_task, wait_task
from instance_benchmarks.core.contract import NO_METRICS

VAL_MSE = [{"name": "val_mse", "regex": r"val_mse=([0-9.]+)"}]
# prints `val_mse 0.05` (no `=`) for ever: the regex never matches
TALKS_PAST_THE_REGEX = "import time\nwhile True:\n    print('epoch 1 val_mse 0.05', flush=True)\n    time.sleep(0.05)\n"


def _run(tmp_path: Path, source: str, task: dict, deadline: float = 60.0):
    script = tmp_path / "train.py"
    script.write_text(source)
    task = {"script": "train.py", "args": [], **task}
    run = start_task(task, Path(sys.executable), cwd=tmp_path, env=None, log_path=tmp_path / "script.log")
    code, sliced = wait_task(run, task, deadline)
    outcome = attempt_outcome(run.script_exit_code(code), stop_reason=run.stop_reason, sliced=sliced,
                              silent=silent(task, run))
    return run, task, outcome


def test_a_regex_that_never_matches_stops_the_script_after_the_grace_period(tmp_path):
    started = time.monotonic()
    run, task, outcome = _run(tmp_path, TALKS_PAST_THE_REGEX, {"metric_definitions": VAL_MSE,
                                                               "metrics_grace_seconds": 1.0})
    assert time.monotonic() - started < 30  # stopped after the grace period, not at the 60 s deadline
    assert run.stop_reason.startswith(NO_METRICS) and outcome == NO_METRICS
    note = silence_note(task, run)
    assert "\n" not in note and note.startswith("no metrics: ")
    assert "val_mse: regex 'val_mse=([0-9.]+)'" in note  # names the regex
    assert "'epoch 1 val_mse 0.05' did not match" in note  # and shows a line it did not match


def test_a_script_that_ends_before_the_grace_period_without_a_metric_is_no_metrics(tmp_path):
    source = "print('starting'); print('val_mse 0.05'); print('done')\n"
    run, task, outcome = _run(tmp_path, source, {"metric_definitions": VAL_MSE, "metrics_grace_seconds": 300.0})
    assert run.stop_reason is None and outcome == NO_METRICS  # exit 0, but nothing measured
    assert "'val_mse 0.05' did not match" in silence_note(task, run)  # the line that names the metric


def test_a_benchmark_slice_without_a_metric_is_no_metrics_at_its_end(tmp_path):
    run, task, outcome = _run(tmp_path, TALKS_PAST_THE_REGEX, {
        "metric_definitions": VAL_MSE, "metrics_grace_seconds": 300.0,
        "benchmark": {"max_minutes": 0.02, "total_steps": 100}})
    assert run.stop_reason.startswith("benchmark slice") and outcome == NO_METRICS


def test_a_silent_script_that_times_out_is_no_metrics(tmp_path):
    run, task, outcome = _run(tmp_path, TALKS_PAST_THE_REGEX, {"metric_definitions": VAL_MSE,
                                                               "metrics_grace_seconds": 300.0}, deadline=1.0)
    assert run.stop_reason.startswith("deadline") and outcome == NO_METRICS


def test_json_lines_or_a_matching_line_keep_the_script_running(tmp_path):
    source = ("import json, time\nfor i in range(30):\n    print(json.dumps({'step': i}) if i == 0 else 'val_mse=0.5',"
              " flush=True)\n    time.sleep(0.1)\n")
    run, task, outcome = _run(tmp_path, source, {"metric_definitions": VAL_MSE, "metrics_grace_seconds": 1.0})
    assert run.stop_reason is None and outcome == "completed" and len(run.records) == 30


def test_a_task_that_expects_no_metrics_is_not_stopped(tmp_path):
    """No metric_definitions, target, benchmark or workload: no grace period is set, silence is fine."""
    run, task, outcome = _run(tmp_path, "print('trained')\n", {"metrics_grace_seconds": None})
    assert outcome == "completed"


def test_a_script_that_printed_nothing_says_so(tmp_path):
    run, task, outcome = _run(tmp_path, "pass\n", {"metrics_grace_seconds": 60.0})
    assert outcome == NO_METRICS
    note = silence_note(task, run)
    assert "no output line was a JSON metric line" in note and "the script printed nothing" in note


def test_a_failing_script_stays_failed():
    """A crash is the cause worth reporting (and retried once), even when no metric was printed."""
    assert attempt_outcome(1, stop_reason=None, sliced=False, silent=True) == "failed"
    assert attempt_outcome(75, stop_reason="spot interruption notice", sliced=False, silent=True) == "interrupted"


def test_an_event_tag_alone_is_not_a_metric(tmp_path):
    source = "import json\nprint(json.dumps({'event': 'started'}))\nprint('val_mse 0.05')\n"
    run, task, outcome = _run(tmp_path, source, {"metric_definitions": VAL_MSE, "metrics_grace_seconds": 60.0})
    assert run.records and outcome == NO_METRICS
