"""Kill the launcher midway (SIGKILL, no cleanup), then `trainfleet campaign teardown` leaves nothing running."""
import os
import signal
import subprocess
import select
import sys
from pathlib import Path

import pytest
import yaml

from instance_benchmarks.backends.ec2.instances import LIVE_STATES, campaign_instances
from instance_benchmarks.core.contract import CAMPAIGN_TAG
from instance_benchmarks.embedded.cloud import start_local_cloud
from tests.instance_benchmarks.conftest import spec_dict

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def cloud():
    cloud = start_local_cloud()
    yield cloud
    cloud.server.stop()


@pytest.fixture(autouse=True)
def acme_remote(workloads_repo, monkeypatch):
    """`campaign launch` resolves spec_dict's https://github.com/acme/ repository with the user's git, here
    rewritten (insteadOf) to a local repository: no network."""
    for key, value in {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{workloads_repo.as_uri()}.insteadOf",
                       "GIT_CONFIG_VALUE_0": spec_dict()["repo"]}.items():
        monkeypatch.setenv(key, value)


# `trainfleet` whose RunInstances call number LIMIT + 1 announces itself on a pipe and then waits to be
# killed: the launcher dies at a known point (LIMIT instances started, the next attempt recorded as
# `launching`, its RunInstances never sent), whatever the machine's speed.
BLOCKING_LAUNCHER = """
import os, signal, sys
import botocore.client
from instance_benchmarks.cli import main
limit, fd = int(os.environ["TEST_RUN_INSTANCES_LIMIT"]), int(os.environ["TEST_BLOCKED_FD"])
real, calls = botocore.client.BaseClient._make_api_call, [0]
def call(self, operation, params):
    if operation == "RunInstances":
        calls[0] += 1
        if calls[0] > limit:
            os.write(fd, b"blocked")
            while True:
                signal.pause()
    return real(self, operation, params)
botocore.client.BaseClient._make_api_call = call
main()
"""


def _cli(cloud, *args, code="from instance_benchmarks.cli import main; main()", extra_env=None, pass_fds=(),
         output=subprocess.PIPE):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **cloud.server.env, **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, pass_fds=pass_fds,
                            stdout=output, stderr=output, text=True)


def test_teardown_after_killed_launcher(cloud, tmp_path):
    types = ["c5.large", "c5.xlarge", "c5.2xlarge", "m5.large", "m5.xlarge", "t3.medium"]
    spec = spec_dict(campaign="killed", budget_usd=100, matrix={"instance_type": types, "batch_size": list(range(3, 33))})
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(spec))
    ec2 = cloud.client("ec2")
    blocked, signal_end = os.pipe()
    log = (tmp_path / "launcher.log").open("w")  # a file, not a pipe nobody reads while it launches
    try:
        launcher = _cli(cloud, "campaign", "launch", str(path), "--yes", code=BLOCKING_LAUNCHER, pass_fds=(signal_end,),
                        extra_env={"TEST_RUN_INSTANCES_LIMIT": "5", "TEST_BLOCKED_FD": str(signal_end)}, output=log)
        os.close(signal_end)
        ready, _, _ = select.select([blocked], [], [], 120)  # the event, not a timing window; 120 s only bounds a hang
        message = os.read(blocked, 16) if ready else b""
    finally:
        os.close(blocked)
        log.close()
    if message != b"blocked":  # EOF: it exited (or hung) before its 6th launch
        launcher.kill()
        launcher.wait()
        pytest.fail(f"the launcher never reached its 6th launch: {(tmp_path / 'launcher.log').read_text()[-2000:]}")
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    launched = len(campaign_instances(ec2, "killed", LIVE_STATES))
    assert launched == 5  # killed midway, at a known point: 5 of 180 started

    teardown = _cli(cloud, "campaign", "teardown", "killed")
    out, err = teardown.communicate(timeout=120)
    assert teardown.returncode == 0, err
    assert f"ec2: ended {launched}" in out
    assert campaign_instances(ec2, "killed", LIVE_STATES) == []
    open_requests = ec2.describe_spot_instance_requests(Filters=[
        {"Name": f"tag:{CAMPAIGN_TAG}", "Values": ["killed"]}, {"Name": "state", "Values": ["open", "active"]}])
    assert open_requests["SpotInstanceRequests"] == []


def test_over_budget_launch_exits_2_and_launches_nothing(cloud, tmp_path):
    path = tmp_path / "expensive.yaml"
    path.write_text(yaml.safe_dump(spec_dict(campaign="pricey", budget_usd=1,
                                             matrix={"instance_type": ["g5.xlarge"], "batch_size": [3, 5]})))
    launcher = _cli(cloud, "campaign", "launch", str(path), "--yes")
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 2 and err.startswith("error: budget $1.00 refused")
    assert campaign_instances(cloud.client("ec2"), "pricey") == []


def test_status_and_models_commands_against_moto(cloud, tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(spec_dict(campaign="small", matrix={"instance_type": ["m5.large"], "batch_size": [3, 5]})))
    launcher = _cli(cloud, "campaign", "launch", str(path), "--yes")
    assert launcher.wait(timeout=120) == 0
    status = _cli(cloud, "campaign", "status", "small")
    out, err = status.communicate(timeout=120)
    assert status.returncode == 0, err
    assert out.count("running") == 4 and "cost so far $" in out  # status and EC2 state of both runs
    teardown = _cli(cloud, "campaign", "teardown", "small")
    assert teardown.wait(timeout=120) == 0
    watched = _cli(cloud, "campaign", "status", "small", "--watch", "0.2")  # returns once nothing is live
    out, err = watched.communicate(timeout=120)
    assert watched.returncode == 0 and out.count("torn down") == 2  # recorded by the teardown: billed, not lost
    models = _cli(cloud, "models", "list", "--campaign", "small")
    out, err = models.communicate(timeout=120)
    assert models.returncode == 0 and "models" in out  # no complete run yet: an empty table
    download = _cli(cloud, "models", "download", "small/nope", "--out", str(tmp_path / "m"))
    out, err = download.communicate(timeout=120)
    assert download.returncode == 2 and err.startswith("error: no run small/nope")


@pytest.mark.parametrize("command", ["status", "collect", "teardown"])
def test_a_misspelt_or_wildcard_campaign_is_an_error_not_an_empty_success(cloud, tmp_path, command):
    path = tmp_path / "named.yaml"
    path.write_text(yaml.safe_dump(spec_dict(campaign="named-sweep", matrix={"instance_type": ["m5.large"], "batch_size": [3]})))
    assert _cli(cloud, "campaign", "launch", str(path), "--yes").wait(timeout=120) == 0
    typo = _cli(cloud, "campaign", command, "named-swep")
    out, err = typo.communicate(timeout=120)
    assert typo.returncode == 2 and "no campaign 'named-swep'" in err and "did you mean named-sweep" in err
    wildcard = _cli(cloud, "campaign", command, "named*")
    out, err = wildcard.communicate(timeout=120)
    assert wildcard.returncode == 2 and err.startswith("error: campaign 'named*' must be")
    assert len(campaign_instances(cloud.client("ec2"), "named-sweep", LIVE_STATES)) == 1  # untouched
