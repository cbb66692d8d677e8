"""`trainfleet campaign run` on AWS (no --local), end to end against moto's server.

The command runs as a user would run it against AWS: its own process, AWS credentials and endpoint from
the environment, an https repository. The test plays the EC2 instances with the embedded default's
local worker (moto cannot boot them), which clones the https URL through git's `insteadOf` rewrite to a
local repository the user wrote (no internet here).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from instance_benchmarks.backends.ec2.instances import LIVE_STATES, campaign_instances
from instance_benchmarks.embedded.environment import EmbeddedEnvironment
from tests.instance_benchmarks.conftest import make_git_repo, spec_dict

ROOT = Path(__file__).resolve().parents[3]
URL = "https://git.example.test/me/tiny.git"
TRAIN = """\
import argparse, json, os, time
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--sleep", type=float, default=0.0)
args = parser.parse_args()
loss = 1.0
for step in range(1, 6):
    loss *= 1 - args.lr
    time.sleep(args.sleep)
    print(json.dumps({"step": step, "loss": loss}), flush=True)
with open(os.path.join(os.environ["TRAINFLEET_OUTPUT_DIR"], "model.txt"), "w") as out:
    out.write(str(loss))
"""


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    repo = tmp_path_factory.mktemp("mine") / "tiny"
    make_git_repo(repo, {"train.py": TRAIN})
    # the instances' git fetches the https URL from the local repository (the only stand-in here)
    rewrite = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{repo.as_uri()}.insteadOf", "GIT_CONFIG_VALUE_0": URL}
    env = EmbeddedEnvironment.start(worker_env=rewrite, log=lambda message: None)
    env.git_rewrite = rewrite  # and the user's git resolves the ref there too (campaign run's ls-remote)
    yield env
    env.close()


def _spec(tmp_path: Path, campaign: str, **changes) -> Path:
    data = spec_dict(campaign=campaign, workload=None, repo=URL, script="train.py", target={"metric": "loss", "value": 0.5},
                     hyperparameters={}, max_attempts=1, matrix={"instance_type": ["c5.large"], "lr": [0.1, 0.3]})
    data.update(changes)
    path = tmp_path / f"{campaign}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(cloud, *args) -> subprocess.Popen:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **cloud.cloud.server.env,
           **cloud.git_rewrite}
    return subprocess.Popen([sys.executable, "-c", "from instance_benchmarks.cli import main; main()", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_instances(cloud, process, campaign: str, count: int) -> None:
    deadline = time.monotonic() + 120
    while len(campaign_instances(cloud.client("ec2"), campaign, LIVE_STATES)) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the runs were never launched"
        time.sleep(0.1)


def _play_until_done(cloud, process, campaign: str) -> tuple[str, str]:
    """Boot the campaign's instances (the local worker) as EC2 would, until the command exits."""
    deadline = time.monotonic() + 300
    while process.poll() is None:
        cloud.worker.drain(campaign)
        assert time.monotonic() < deadline, "campaign run did not finish"
        time.sleep(0.1)
    return process.communicate()


def test_campaign_run_on_aws_launches_follows_reports_and_tears_down(cloud, tmp_path):
    process = _run(cloud, "campaign", "run", str(_spec(tmp_path, "tiny-aws")), "--yes", "--poll-seconds", "0.2",
                   "--out", str(tmp_path / "reports"))
    out, err = _play_until_done(cloud, process, "tiny-aws")
    assert process.returncode == 0, err
    assert "tiny-aws (ec2): 2 launched" in out
    assert "complete (" in out and "running (" in out  # the status of each run as it changed
    assert "teardown: 0 instances/jobs ended, 0 spot requests cancelled, 0 left running" in out
    report = tmp_path / "reports" / "tiny-aws"
    assert (report / "report.csv").is_file() and (report / "best-model" / "model.txt").is_file()
    assert campaign_instances(cloud.client("ec2"), "tiny-aws", LIVE_STATES) == []


def test_ctrl_c_during_campaign_run_tears_everything_down(cloud, tmp_path):
    process = _run(cloud, "campaign", "run", str(_spec(tmp_path, "tiny-int")), "--yes", "--poll-seconds", "0.2",
                   "--out", str(tmp_path / "reports"))
    _wait_for_instances(cloud, process, "tiny-int", 2)  # launched; nobody plays them: they stay running
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130 and err.strip().splitlines()[-1] == "error: interrupted", (out, err)
    assert "teardown: 2 instances/jobs ended" in out and "0 left running" in out
    assert campaign_instances(cloud.client("ec2"), "tiny-int", LIVE_STATES) == []


def test_ctrl_c_with_detach_leaves_the_runs_going_and_says_how_to_come_back(cloud, tmp_path):
    spec = _spec(tmp_path, "tiny-det")
    process = _run(cloud, "campaign", "run", str(spec), "--yes", "--detach", "--poll-seconds", "0.2",
                   "--out", str(tmp_path / "reports"))
    _wait_for_instances(cloud, process, "tiny-det", 2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "detached: 2 run(s) of tiny-det keep running" in out and "trainfleet campaign teardown tiny-det" in out
    assert len(campaign_instances(cloud.client("ec2"), "tiny-det", LIVE_STATES)) == 2
    # reattach: the same command picks the live runs up, waits for them and finishes the campaign
    again = _run(cloud, "campaign", "run", str(spec), "--yes", "--poll-seconds", "0.2", "--out", str(tmp_path / "reports"))
    out, err = _play_until_done(cloud, again, "tiny-det")
    assert again.returncode == 0, err
    assert "tiny-det (ec2): 0 launched" in out and (tmp_path / "reports" / "tiny-det" / "report.csv").is_file()


def test_a_campaign_whose_runs_fail_exits_non_zero_without_retrying_bad_input(cloud, tmp_path):
    """The script refuses its arguments (argparse exits 2): each run fails once, is not relaunched, and
    the command's exit status says the campaign did not complete."""
    spec = _spec(tmp_path, "tiny-bad", max_attempts=3, target=None, matrix={"instance_type": ["c5.large"], "lr": [0.1]},
                 hyperparameters={"momentum": 0.9})
    process = _run(cloud, "campaign", "run", str(spec), "--yes", "--poll-seconds", "0.2", "--out", str(tmp_path / "r"))
    out, err = _play_until_done(cloud, process, "tiny-bad")
    assert process.returncode == 1, (out, err)
    assert "1 run(s) did not complete" in out and "relaunched" not in out
    assert len(campaign_instances(cloud.client("ec2"), "tiny-bad")) == 1  # one attempt: bad input is not retried
