"""What a repository's script, a record or the bucket holds reaches the terminal defused and report.csv as
data: every sink that prints such text (campaign logs and --follow, status --wide, the live progress, failure
lines, the report, models and jobs listings, error lines) shows control and bidi characters escaped and Rich
markup as text; report.csv neutralises formula cells; report.html escapes. In-process moto holds the records."""
from __future__ import annotations

import csv
import io
import json
import sys

import pytest

from instance_benchmarks import cli, runner
from instance_benchmarks.commands import campaign_view
from instance_benchmarks.campaigns.report import build_report, to_csv
from instance_benchmarks.campaigns.report_html import to_html
from instance_benchmarks.campaigns.store import attempt_logs, read_json, run_location, write_json
from instance_benchmarks.core.safe_output import FORMULA_START
from tests.instance_benchmarks.conftest import torn_down_run
from training_scripts.storage import S3Location

TITLE = "\x1b]0;pwned\x07"                      # retitles the terminal
CLEAR = "\x1b[2J\x1b[H"                          # clears the screen
BIDI = "\u202e"                                  # reverses what follows
LINK = "[link=http://evil.test]click[/link]"     # Rich markup: a hyperlink if interpreted
FORMULA = '=HYPERLINK("http://evil.test","x")'
HTML = "<img src=x onerror=alert(1)>"
RAW = ("\x1b", "\x07", "\x9b", BIDI)


def _clean(text: str) -> str:
    assert not [c for c in RAW if c in text], repr(text)
    return text


@pytest.fixture
def hostile(env, s3, infra):
    """One launched and torn-down run whose records and logs the script (or anyone with the bucket) wrote."""
    _, run, location = torn_down_run(env, infra.bucket, outcome="failed", exit_code=1,
                                     note=f"{CLEAR}crashed\nerror: a spoofed line")
    write_json(location, "launch.json", {**read_json(location, "launch.json"), "label": f"{TITLE}{LINK}{BIDI}"})
    logs = attempt_logs(s3, infra.bucket, "sweep", run.run_id, 1)
    logs.write_bytes("bootstrap.log", f"setup\n{TITLE}training {CLEAR}\x9b31m\r\nloss {BIDI}0.5\n".encode())
    write_json(logs, "progress.json", {"latest": {"step": 3, f"{TITLE}loss": 0.5}})
    return run.run_id


def _cli(monkeypatch, capsys, *argv) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["trainfleet", *argv])
    code = 0
    try:
        cli.main()
    except SystemExit as exit_info:
        code = exit_info.code or 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, _clean(out), _clean(err)


@pytest.mark.parametrize("follow", [[], ["--follow", "--poll-seconds", "0.1"]], ids=["logs", "logs-follow"])
def test_campaign_logs_show_the_scripts_escapes_as_text(hostile, monkeypatch, capsys, follow):
    code, out, _ = _cli(monkeypatch, capsys, "campaign", "logs", "sweep", hostile, *follow)
    assert code == 0
    assert "\\x1b]0;pwned\\x07training \\x1b[2J\\x1b[H\\x9b31m\nloss \\u202e0.5" in out  # lines stay lines


@pytest.mark.parametrize("wide", [["--wide"], []], ids=["wide", "fit"])
def test_status_shows_labels_and_pushed_metric_names_as_text(hostile, monkeypatch, capsys, wide):
    code, out, _ = _cli(monkeypatch, capsys, "campaign", "status", "sweep", *wide)
    assert code == 0 and "c5-xlarge-bs3" in out  # _cli: nothing raw in it
    if wide:  # the label and the pushed metric's name
        assert "\\x1b]0;pwned" in out and LINK in out.replace("\n", "")  # markup as text, not a hyperlink


def test_failure_lines_keep_a_note_on_its_line(hostile, env, capsys):
    campaign_view.print_failures(env, "sweep")
    out = _clean(capsys.readouterr().out)
    assert "\\x1b[2J\\x1b[Hcrashed\\nerror: a spoofed line" in out
    assert not any(line.startswith("error: a spoofed") for line in out.splitlines())


def test_the_live_progress_escapes_what_runs_print(hostile, env, capsys, monkeypatch):
    display = campaign_view.StatusDisplay("sweep")
    display.update(runner.status_rows(env, "sweep"))  # not a terminal: one line per run
    display.log(f"{hostile}: attempt 1 ended: {TITLE}")
    display.close()
    out = _clean(capsys.readouterr().out)
    assert "\\x1b]0;pwned\\x07loss 0.5" in out and out.count("\\x1b]0;pwned") == 2


def test_an_error_line_naming_bucket_content_stays_one_line(hostile, s3, infra, monkeypatch, capsys):
    write_json(run_location(s3, infra.bucket, "sweep", f"evil{CLEAR}\nrun"), "launch.json", {"attempts": []})
    code, _, err = _cli(monkeypatch, capsys, "campaign", "logs", "sweep", "nosuchrun")
    assert code == 2 and len(err.splitlines()) == 1 and "evil\\x1b[2J\\x1b[H\\nrun" in err


@pytest.fixture
def hostile_results(s3, bucket):
    return _write_results(s3, bucket)


def _write_results(s3, bucket: str) -> str:
    """Two complete runs whose result.json and metrics came from the script: formula cells, escapes, markup."""
    write_json(S3Location(bucket, "campaigns/sweep", s3), "campaign.json",
               {"backends": {"ec2": {"spec": {"matrix": {"instance_type": ["c5.xlarge"], "batch_size": [3, 5]}}}}})
    for run_id, batch, instance_type in [("r3", 3, FORMULA), ("r5", 5, f"{HTML}{TITLE}{LINK}")]:
        location = run_location(s3, bucket, "sweep", run_id)
        write_json(location, "launch.json", {"hyperparameters": {"batch_size": batch, "note": f"{TITLE}{LINK}"},
                                             "attempts": [{"outcome": "completed"}]})
        write_json(location, "result.json", {
            "status": "complete", "run_id": run_id, "instance_type": instance_type, "market": "spot",
            "price": {"usd_per_hour": 0.06}, "samples_per_s": 100.0 * batch, "train_seconds": 10.0, "cost_usd": -0.001,
            "final_metric": 1.0, "primary_metric": "loss", "attempts": 1, "host": f"@SUM(1){BIDI}",
            "hyperparameters": {"batch_size": batch, "note": f"{CLEAR}\t{LINK}"}, "train_artifacts": {"model.pt": "ab" * 32}})
        location.child("train").write_bytes("model.pt", b"weights")
        location.child("train").write_bytes("metrics.jsonl", json.dumps(
            {"step": 1, "=cmd|calc": 2, f"{TITLE}acc": 0.5, LINK: 1.5, "loss": -0.5}).encode() + b"\n")
    return bucket


def test_report_csv_cells_are_data_not_formulas(s3, hostile_results):
    rows = list(csv.reader(io.StringIO(to_csv(build_report(s3, hostile_results, "sweep")).decode())))
    cells = [cell for row in rows for cell in row]
    assert f"'{FORMULA}" in cells  # the instance type, as text
    for cell in cells:
        assert not cell.startswith(FORMULA_START) or cell.lstrip("+-").replace(".", "", 1).replace("e-", "").isdigit(), cell
    assert "-0.001" in cells  # a number stays a number


def test_report_on_the_terminal_and_in_html_shows_record_text_as_text(s3, hostile_results, capsys):
    report = build_report(s3, hostile_results, "sweep")
    campaign_view.print_report(report, wide=True)
    out = _clean(capsys.readouterr().out)
    assert "\\x1b]0;pwned" in out and LINK in out.replace("\n", "")
    page = to_html(report, {})
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and HTML not in page  # and the rest as above
    assert '=HYPERLINK(&quot;http://evil.test&quot;,&quot;x&quot;)' in page and '"http://evil.test"' not in page


@pytest.mark.parametrize("plain", [[], ["--plain"]], ids=["table", "plain"])
def test_models_list_shows_record_text_as_text(env, s3, infra, monkeypatch, capsys, plain):
    _write_results(s3, infra.bucket)
    code, out, _ = _cli(monkeypatch, capsys, "models", "list", "--campaign", "sweep", *plain)
    assert code == 0 and "\\x1b]0;pwned" in out  # the instance type
    assert ("\\u001b[2J\\u001b[H" if plain else "\\x1b[2J\\x1b[H") in out  # hyperparameters: JSON, or a dict
    if plain:  # one line per model, seven tab-separated fields whatever the values hold
        assert [len(line.split("\t")) for line in out.splitlines()] == [7, 7]
