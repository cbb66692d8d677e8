"""The report in a terminal: the recommendation first, tables that fit 100 columns (COLUMNS=100) without
wrapping, `--wide` for every column; `campaign status` in the same style."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from instance_benchmarks.campaigns.bench_report import synthetic_campaign
from instance_benchmarks.campaigns.store import run_location, write_json
from training_scripts.storage import S3Location

ROOT = Path(__file__).resolve().parents[3]
PRINT = """
from instance_benchmarks.commands.campaign_view import print_report
from instance_benchmarks.campaigns.bench_report import synthetic_campaign
from instance_benchmarks.campaigns.report import assemble_report
records, document, histories = synthetic_campaign(24, repeats=2, campaign="sweep")
print_report(assemble_report("sweep", records, document, histories), wide={wide})
"""


def _print_report(wide: bool) -> list[str]:
    """`print_report` in its own process, its output piped (not a terminal), with COLUMNS=100."""
    done = subprocess.run([sys.executable, "-c", PRINT.format(wide=wide)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "100"})
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_with_columns_100_the_report_fits_and_each_run_is_one_line():
    lines = _print_report(wide=False)
    records, _, _ = synthetic_campaign(24, repeats=2, campaign="sweep")
    assert lines[0].startswith("sweep: ") and " is the cheapest to reach final10_reward >= 195" in lines[0]
    assert lines[1].startswith("  cheapest: ")
    assert max(len(line) for line in lines) <= 100
    for record in records:  # the whole run id (never cut) and its status on one line
        [line] = [line for line in lines if line.startswith(record["run_id"] + " ")]
        assert line.rstrip().endswith(("reached", "missed"))
    assert any(line.startswith("configurations: median of the repeats") for line in lines)


def test_wide_shows_every_column():
    lines = _print_report(wide=True)
    header = next(line for line in lines if line.startswith("run ") and "configuration" in line)
    for heading in ("interrupted attempts ($)", "EBS ($)", "idle (s)", "price source", "on-demand $/h"):
        assert heading in header
    assert max(len(line) for line in lines) > 100


def _complete_campaign(s3, bucket: str) -> None:
    records, document, histories = synthetic_campaign(4, repeats=2, campaign="sweep")
    write_json(S3Location(bucket, "campaigns/sweep", s3), "campaign.json", document)
    for record in records:
        location = run_location(s3, bucket, "sweep", record["run_id"])
        write_json(location, "launch.json", record["launch"])
        write_json(location, "result.json", record["result"])


def test_collect_and_status_print_the_fitted_tables(env, s3, infra, tmp_path, monkeypatch):
    from instance_benchmarks import cli
    from instance_benchmarks.commands import output, shared

    _complete_campaign(s3, infra.bucket)
    monkeypatch.setattr(shared, "Environment", lambda region, ssm_prefix="/trainfleet": env)
    out = io.StringIO()
    monkeypatch.setattr(output, "console", Console(file=out, width=100, force_terminal=False))
    result = CliRunner().invoke(cli.app, ["campaign", "collect", "sweep", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output + out.getvalue()
    lines = out.getvalue().splitlines()
    assert " is the cheapest to reach final10_reward >= 195" in lines[0] and max(map(len, lines)) <= 100
    assert (tmp_path / "sweep" / "report.html").is_file()
    out.seek(0), out.truncate()
    result = CliRunner().invoke(cli.app, ["campaign", "status", "sweep"])
    assert result.exit_code == 0, result.output + out.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[1].split() == ["run", "instance", "status", "state", "attempts", "$/h", "cost", "so", "far", "($)"]
    assert max(map(len, lines)) <= 100
    out.seek(0), out.truncate()
    assert CliRunner().invoke(cli.app, ["campaign", "status", "sweep", "--wide"]).exit_code == 0
    assert "run label" in out.getvalue() and "instance/job" in out.getvalue()
