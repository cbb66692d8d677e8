"""A campaign run, a new commit (or another repo), the same campaign again: the new code is measured as new
runs, and the earlier runs (complete or given up) are kept, shown apart, never reported as current."""
from dataclasses import replace

import pytest

from instance_benchmarks import runner
from instance_benchmarks.campaigns.report import build_report, to_csv, to_markdown
from instance_benchmarks.campaigns.report_html import to_html
from instance_benchmarks.campaigns.store import read_json, run_location, write_json
from instance_benchmarks.core.errors import TrainfleetInputError
from tests.instance_benchmarks.campaigns.test_report import _result
from tests.instance_benchmarks.conftest import FAKE_COMMIT, bound_spec, spec_dict

OLD, NEW = "a" * 40, "b" * 40


def _first_campaign(env, s3, bucket):
    """One complete run and one given up (its one attempt lost), both of commit OLD."""
    spec = replace(bound_spec(spec_dict(max_attempts=1, matrix={"instance_type": ["c5.xlarge"], "batch_size": [3, 5]})),
                   commit=OLD)
    runner.launch(env, spec)
    runner.teardown(env, "sweep")
    done, failed = spec.runs()
    # A torn-down attempt does not count against max_attempts (ended by the user): say the instance was lost.
    location = run_location(s3, bucket, "sweep", failed.run_id)
    record = read_json(location, "launch.json")
    record["attempts"][-1]["outcome"] = "lost"
    write_json(location, "launch.json", record)
    write_json(run_location(s3, bucket, "sweep", done.run_id), "result.json",
               {**_result(done.run_id, 3, 900.0, 200.0, 4.0), "code": OLD})
    assert runner.launch(env, spec).gave_up == [failed.run_id]
    return spec, done, failed


def test_a_new_commit_is_measured_as_new_runs_and_the_old_result_is_never_current(env, s3, infra, capsys):
    spec, done, failed = _first_campaign(env, s3, infra.bucket)
    assert [r["run_id"] for r in build_report(s3, infra.bucket, "sweep").rows] == [done.run_id]
    new = replace(spec, commit=NEW)
    summary = runner.launch(env, new)
    assert sorted(x["run_id"] for x in summary.launched) == sorted(r.run_id for r in new.runs())
    assert summary.skipped_complete == [] and summary.gave_up == []
    report = build_report(s3, infra.bucket, "sweep")
    assert report.rows == [] and runner.best_run(report) is None  # the old result is not this code's
    assert sorted(r["run_id"] for r in report.incomplete) == sorted(r.run_id for r in new.runs())
    assert [(r["run_id"], r["code"], r["outcome"]) for r in report.earlier] == sorted(
        [(done.run_id, OLD[:12], "complete"), (failed.run_id, OLD[:12], "lost")])
    assert done.run_id not in to_csv(report).decode()
    markdown = to_markdown(report)
    runs_part, earlier_part = markdown.split("## Earlier code or settings (2 run(s))")
    assert done.run_id not in runs_part and f"{done.run_id} c5.xlarge batch_size=3: commit {OLD[:12]}" in earlier_part
    assert 'id="earlier-code"' in to_html(report, {})
    from instance_benchmarks.commands.campaign_view import print_report

    capsys.readouterr()
    print_report(report)
    terminal = capsys.readouterr().out
    assert done.run_id not in terminal.split("Earlier code or settings (2 run(s))")[0]
    assert f"{done.run_id} c5.xlarge batch_size=3: commit {OLD[:12]}, complete" in terminal
    runner.teardown(env, "sweep")
    statuses = {row["run_id"]: row["status"] for row in runner.status_rows(env, "sweep")}
    assert statuses[done.run_id] == "earlier code, complete" and statuses[failed.run_id] == "earlier code, lost"
    assert failed.run_id not in {f["run_id"] for f in runner.failure_report(env, "sweep")}


def test_another_repo_is_measured_as_new_runs(env, s3, infra):
    spec, done, _ = _first_campaign(env, s3, infra.bucket)
    moved = bound_spec(spec_dict(repo="https://github.com/acme/other.git", max_attempts=1,
                                 matrix={"instance_type": ["c5.xlarge"], "batch_size": [3, 5]}))
    assert moved.commit == FAKE_COMMIT
    summary = runner.launch(env, moved)
    assert len(summary.launched) == 2 and summary.skipped_complete == []
    report = build_report(s3, infra.bucket, "sweep")
    assert report.rows == [] and done.run_id in {r["run_id"] for r in report.earlier}


def test_an_unbound_spec_is_bound_by_launch_and_the_same_code_resumes(env, s3, infra):
    unbound = bound_spec(spec_dict(matrix={"instance_type": ["c5.xlarge"], "batch_size": [3]}))
    unbound = replace(unbound, commit=None)
    first = runner.launch(env, unbound)
    [run] = replace(unbound, commit=FAKE_COMMIT).runs()
    assert [x["run_id"] for x in first.launched] == [run.run_id]  # bound to what `main` names now
    runner.teardown(env, "sweep")
    write_json(run_location(s3, infra.bucket, "sweep", run.run_id), "result.json",
               {**_result(run.run_id, 3, 900.0, 200.0, 4.0), "code": FAKE_COMMIT})
    again = runner.launch(env, unbound)
    assert again.launched == [] and again.skipped_complete == [run.run_id]
    assert [r["run_id"] for r in build_report(s3, infra.bucket, "sweep").rows] == [run.run_id]


def test_the_run_summary_counts_only_the_current_runs(capsys):
    from instance_benchmarks.commands.campaign_view import print_summary

    print_summary([{"status": "complete", "attempts": 1, "cost_usd": 0.5},
                   {"status": "earlier code, complete", "attempts": 2, "cost_usd": 1.0}], 61)
    assert ("summary: 1/1 complete (1 complete); 1 attempt(s); cost $0.5000; 1m01s; 1 run(s) of earlier code kept "
            "apart") in capsys.readouterr().out


def test_live_runs_of_earlier_code_count_in_the_budget(env, ec2):
    old = replace(bound_spec(spec_dict(budget_usd=0.15, matrix={"instance_type": ["c5.xlarge"], "batch_size": [3]})),
                  commit=OLD)
    assert len(runner.launch(env, old).launched) == 1  # still running (a detached campaign, say)
    worst = runner.launch(env, old).estimate_worst_usd
    assert worst < 0.15 < 2 * worst
    with pytest.raises(TrainfleetInputError, match=r"budget \$0.15 refused.*nothing launched"):
        runner.launch(env, replace(old, commit=NEW))
