"""A CLI a person can trust (issue 14), against moto's server: loud failures with their logs, no silent
typos or wrong regions, costs that survive a teardown, progress and logs, output that can be copied.

Each command runs in its own process as a user would run it against AWS (credentials and endpoint from the
environment); the test plays the EC2 instances with the embedded default's local worker (moto cannot boot
them), which clones the https URL from a local repository through git's `insteadOf`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from instance_benchmarks.backends.ec2.instances import LIVE_STATES, campaign_instances
from instance_benchmarks.cli import app
from instance_benchmarks.embedded.environment import EmbeddedEnvironment
from instance_benchmarks.embedded.moto_server import LOCAL_CREDENTIALS
from tests.instance_benchmarks.conftest import make_git_repo, spec_dict

ROOT = Path(__file__).resolve().parents[2]
LOCAL_CREDENTIALS_KW = {"aws_access_key_id": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        "aws_secret_access_key": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                        "aws_session_token": LOCAL_CREDENTIALS["AWS_SESSION_TOKEN"]}
URL = "https://git.example.test/me/trust.git"
TRAIN = """\
import argparse, json, os, sys
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
args = parser.parse_args()
if args.lr > 0.5:
    print("error: --lr must be at most 0.5", file=sys.stderr)
    sys.exit(2)
loss = 1.0
for step in range(1, 6):
    loss *= 1 - args.lr
    print(json.dumps({"epoch": 1, "step": step, "loss": loss}), flush=True)
with open(os.path.join(os.environ["TRAINFLEET_OUTPUT_DIR"], "model.pt"), "w") as out:
    out.write(str(loss))
"""


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    repo = tmp_path_factory.mktemp("trust") / "repo"
    make_git_repo(repo, {"train.py": TRAIN})
    rewrite = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{repo.as_uri()}.insteadOf", "GIT_CONFIG_VALUE_0": URL,
               "TRAINFLEET_PROGRESS_SECONDS": "0.2"}
    env = EmbeddedEnvironment.start(worker_env=rewrite, log=lambda message: None)
    env.git_rewrite = {key: value for key, value in rewrite.items() if key.startswith("GIT_")}  # the user's git too
    yield env
    env.close()


def _spec(tmp_path: Path, campaign: str, **changes) -> Path:
    data = spec_dict(campaign=campaign, workload=None, repo=URL, script="train.py", target={"metric": "loss", "value": 0.5},
                     hyperparameters={}, max_attempts=3, matrix={"instance_type": ["c5.large"], "lr": [0.1, 0.9]})
    data.update(changes)
    path = tmp_path / f"{campaign}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _env(cloud, **extra) -> dict:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **cloud.cloud.server.env,
            **cloud.git_rewrite, **extra}


def _start(cloud, *args, **extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from instance_benchmarks.cli import main; main()", *args],
                            cwd=ROOT, env=_env(cloud, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _trainfleet(cloud, *args, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from instance_benchmarks.cli import main; main()", *args],
                          cwd=ROOT, env=_env(cloud, **extra), capture_output=True, text=True, timeout=300)


def _play_until_done(cloud, process, campaign: str) -> tuple[str, str]:
    """Boot the campaign's instances (the local worker) as EC2 would, until the command exits."""
    deadline = time.monotonic() + 300
    while process.poll() is None:
        cloud.worker.drain(campaign)
        assert time.monotonic() < deadline, "the command did not finish"
        time.sleep(0.1)
    return process.communicate()


def _runs(cloud, campaign: str) -> dict[str, dict]:
    from instance_benchmarks.campaigns.store import load_run_records

    return {r["launch"]["hyperparameters"]["lr"]: r
            for r in load_run_records(cloud.client("s3"), cloud.infra.bucket, campaign)}


@pytest.fixture(scope="module")
def finished(cloud, tmp_path_factory):
    """`campaign run` of two runs: lr 0.1 completes, lr 0.9 fails on its input (exit 2)."""
    tmp_path = tmp_path_factory.mktemp("finished")
    process = _start(cloud, "campaign", "run", str(_spec(tmp_path, "trust")), "--yes", "--poll-seconds", "0.2",
                     "--out", str(tmp_path / "reports"))
    started = time.monotonic()
    out, err = _play_until_done(cloud, process, "trust")
    return process.returncode, out, err, time.monotonic() - started, tmp_path


def test_a_run_that_fails_on_its_input_is_not_retried_and_the_campaign_exits_1_with_its_log(cloud, finished):
    code, out, err, seconds, _ = finished
    assert code == 1, (out, err)
    runs = _runs(cloud, "trust")
    bad, good = runs[0.9], runs[0.1]
    assert [(a["outcome"], a["exit_code"]) for a in bad["launch"]["attempts"]] == [("failed", 2)]  # one attempt
    assert good["result"] is not None and len(good["launch"]["attempts"]) == 1
    assert f"{bad['run_id']}: given up, failed on its input (exit 2)" in out
    # each failure, with the last lines of its log in S3
    assert f"{bad['run_id']}: failed, exit 2 (attempt 1 of 1)" in out
    assert "log line(s) of attempt 1:\n    error: --lr must be at most 0.5" in out
    assert "summary: 1/2 complete (1 complete, 1 failed); 2 attempt(s); cost $" in out
    assert "relaunched" not in out
    assert seconds < 240


def test_progress_shows_step_epoch_metric_elapsed_and_cost(cloud, finished):
    _, out, _, _, _ = finished
    good = _runs(cloud, "trust")[0.1]
    line = next(l for l in out.splitlines() if l.startswith(f"  {good['run_id']}: complete ("))
    assert "attempt 1, epoch 1 step 5, loss 0.5905, " in line and "s, $0.0" in line
    # what the agent pushed while the script ran (the table's source for a live attempt)
    from instance_benchmarks.campaigns.store import read_progress

    pushed = read_progress(cloud.client("s3"), cloud.infra.bucket, "trust", good["run_id"], 1)
    assert pushed["records"] == 5 and pushed["latest"] == {"epoch": 1, "step": 5, "loss": pytest.approx(0.9 ** 5)}


def test_collect_exits_1_and_prints_each_failure_with_its_log(cloud, finished, tmp_path):
    result = _trainfleet(cloud, "campaign", "collect", "trust", "--out", str(tmp_path))
    assert result.returncode == 1, result
    assert "1 run(s) did not complete" in result.stdout and "error: --lr must be at most 0.5" in result.stdout


def test_logs_prints_a_runs_log_from_s3(cloud, finished):
    bad = _runs(cloud, "trust")[0.9]["run_id"]
    result = _trainfleet(cloud, "campaign", "logs", "trust", bad)
    assert result.returncode == 0, result.stderr
    assert "trainfleet agent: running train.py --lr=0.9" in result.stdout
    assert "error: --lr must be at most 0.5" in result.stdout
    script = _trainfleet(cloud, "campaign", "logs", "trust", bad, "--file", "script", "--follow")
    assert script.returncode == 0 and script.stdout == "error: --lr must be at most 0.5\n"  # settled: ends at once
    wrong = _trainfleet(cloud, "campaign", "logs", "trust", bad[:-1])
    assert wrong.returncode == 2 and f"(did you mean {bad}" in wrong.stderr
    assert _trainfleet(cloud, "campaign", "logs", "trust", bad, "--attempt", "2").returncode == 2


def test_logs_follow_prints_until_the_run_settles(cloud, tmp_path):
    spec = _spec(tmp_path, "trust-follow", matrix={"instance_type": ["c5.large"], "lr": [0.2]})
    launched = _trainfleet(cloud, "campaign", "launch", str(spec), "--yes")
    assert launched.returncode == 0, launched.stderr
    [run] = _runs(cloud, "trust-follow").values()
    follow = _start(cloud, "campaign", "logs", "trust-follow", run["run_id"], "--follow", "--poll-seconds", "0.2")
    cloud.worker.drain("trust-follow")  # the instance runs and ends while `logs --follow` polls
    out, err = follow.communicate(timeout=120)
    assert follow.returncode == 0, err
    assert '{"epoch": 1, "step": 5, "loss": 0.32768' in out and "script exited 0" in out


def test_models_list_never_wraps_the_run_and_plain_is_tab_separated(cloud, finished, tmp_path):
    good = _runs(cloud, "trust")[0.1]
    ref = f"trust/{good['run_id']}"
    table = _trainfleet(cloud, "models", "list", "--campaign", "trust")
    assert table.returncode == 0 and ref in table.stdout, table.stdout
    plain = _trainfleet(cloud, "models", "list", "--plain")
    fields = [line.split("\t") for line in plain.stdout.splitlines() if line.startswith("trust/")]
    assert [f[:3] for f in fields] == [[ref, "c5.large", "loss"]] and len(fields[0]) == 7
    assert fields[0][5] == good["result"]["train_artifacts"]["model.pt"]
    download = _trainfleet(cloud, "models", "download", fields[0][0], "--out", str(tmp_path / "model"))
    assert download.returncode == 0 and (tmp_path / "model" / "model.pt").is_file(), download.stderr


@pytest.mark.parametrize("command", [
    ["campaign", "teardown", "trsut"], ["campaign", "status", "trsut"], ["campaign", "collect", "trsut"],
    ["campaign", "logs", "trsut", "some-run"], ["models", "list", "--campaign", "trsut"],
    ["models", "download", "trsut/some-run", "--out", "never-written"],
])
def test_a_misspelt_campaign_exits_2_naming_the_campaigns_that_exist(cloud, finished, tmp_path, command):
    bucket = cloud.infra.bucket
    result = subprocess.run([sys.executable, "-c", "from instance_benchmarks.cli import main; main()", *command],
                            cwd=tmp_path, env=_env(cloud), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: no campaign 'trsut' in s3://{bucket} (region us-east-1); known: ")
    assert "trust" in line.split("known: ")[1] and line.endswith("(did you mean trust?)")
    assert list(tmp_path.iterdir()) == []  # collect wrote no report, download no folder
    assert cloud.client("s3").list_objects_v2(Bucket=bucket, Prefix="campaigns/trsut").get("KeyCount") == 0


def test_teardown_records_the_cost_of_what_it_ends_in_the_campaigns_own_region(cloud, tmp_path):
    """Launched in us-east-1; teardown and status run with another default region (whose SSM exports
    point at the same bucket) still find its instances there, and the torn-down runs keep their cost."""
    spec = _spec(tmp_path, "trust-down", matrix={"instance_type": ["c5.large"], "lr": [0.1, 0.2]})
    assert _trainfleet(cloud, "campaign", "launch", str(spec), "--yes").returncode == 0
    import boto3

    west = boto3.client("ssm", region_name="us-west-2", endpoint_url=cloud.cloud.server.endpoint, **LOCAL_CREDENTIALS_KW)
    for parameter in cloud.client("ssm").get_parameters_by_path(Path="/trainfleet", Recursive=True)["Parameters"]:
        west.put_parameter(Name=parameter["Name"], Value=parameter["Value"], Type="String", Overwrite=True)
    elsewhere = {"AWS_DEFAULT_REGION": "us-west-2", "AWS_REGION": "us-west-2"}
    result = _trainfleet(cloud, "campaign", "teardown", "trust-down", **elsewhere)
    assert result.returncode == 0, result
    assert "ec2: ended 2 (2 attempt(s) recorded as torn down, cost kept)" in result.stdout
    assert campaign_instances(cloud.client("ec2"), "trust-down", LIVE_STATES) == []
    for run in _runs(cloud, "trust-down").values():
        [attempt] = run["launch"]["attempts"]
        assert attempt["outcome"] == "torn down" and attempt["cost_usd"] > 0 and attempt["billed_seconds"] >= 60
    status = _trainfleet(cloud, "campaign", "status", "trust-down", **elsewhere)
    assert status.returncode == 0 and status.stdout.count("torn down") == 2, status
    import re

    assert float(re.search(r"cost so far \$([0-9.]+)", status.stdout).group(1)) > 0
    # --region overrides the stored region: nothing of the campaign is in us-west-2's EC2
    again = _trainfleet(cloud, "campaign", "teardown", "trust-down", "--region", "us-west-2", **elsewhere)
    assert again.returncode == 0 and "ec2: ended 0" in again.stdout


def test_info_prints_region_identity_bucket_stacks_and_launch_templates(cloud):
    result = _trainfleet(cloud, "info")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "region" in out and "us-east-1" in out and f"s3://{cloud.infra.bucket}" in out
    assert "account" in out and "arn:aws:" in out
    for stack in ("Storage", "Network", "Compute"):
        assert any(line.startswith(f"stack {stack}") and "COMPLETE" in line for line in out.splitlines()), out
    for image, entry in cloud.infra.launch_templates.items():
        assert entry["spot"] in out and entry["on-demand"] in out


def test_help_has_completion_and_no_bool_noise():
    runner = CliRunner()
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "160"})
    assert "--install-completion" in top.output and "<bool>" not in top.output
    for command in (["campaign", "run"], ["campaign", "logs"], ["models", "list"], ["campaign", "launch"]):
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "160"})
        assert result.exit_code == 0 and "<bool>" not in result.output, result.output
        assert "<path>" in result.output or "<str>" in result.output  # other options keep their types
