"""The agent runs on a bare instance: it may import the standard library, boto3, google-re2 (re2) and its own package only."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BLOCKED = ["torch", "numpy", "yaml", "typer", "rich", "pydantic", "aws_cdk", "constructs", "cdk_nag",
           "matplotlib", "pyarrow", "sagemaker", "moto", "sklearn", "gymnasium"]


def test_the_agent_needs_only_the_standard_library_and_boto3():
    code = (
        "import sys, importlib.abc\n"
        f"blocked = {BLOCKED!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in blocked:\n"
        "            raise ImportError(f'the agent imported {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import instance_benchmarks.agent.main, instance_benchmarks.measure.slices\n"
        "sys.argv = ['agent', '--help']\n"
        "import runpy; runpy.run_module('instance_benchmarks.agent', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "upload-log" in done.stdout


def _recording_python(tmp_path: Path) -> tuple[Path, Path]:
    calls = tmp_path / "calls"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    python.chmod(0o755)
    return python, calls


def test_a_bundled_workload_installs_its_own_requirements_not_the_repos(tmp_path):
    from instance_benchmarks.agent.main import set_up

    src = tmp_path / "src"
    (src / "training_scripts").mkdir(parents=True)
    (src / "requirements.txt").write_text("aws-cdk-lib\nmoto\n")
    (src / "training_scripts" / "requirements.txt").write_text("torch>=2.4\ngymnasium\n")
    python, calls = _recording_python(tmp_path)
    set_up({"requirements": "training_scripts/requirements.txt"}, python, src, src, {}, tmp_path / "setup.log")
    assert calls.read_text().split() == ["-m", "pip", "install", "-q", "-r", str(src / "training_scripts" / "requirements.txt")]
    calls.unlink()
    set_up({}, python, src, src, {}, tmp_path / "setup.log")  # a user's repo: its own requirements.txt
    assert calls.read_text().split()[-1] == str(src / "requirements.txt")


def test_a_missing_workload_requirements_file_fails_setup(tmp_path):
    import pytest

    from instance_benchmarks.agent.main import SetupError, set_up

    python, _ = _recording_python(tmp_path)
    with pytest.raises(SetupError, match="training_scripts/requirements.txt is not in the repository"):
        set_up({"requirements": "training_scripts/requirements.txt"}, python, tmp_path, tmp_path, {}, tmp_path / "l")


def test_a_gpu_type_whose_python_sees_no_cuda_fails_loudly(tmp_path, monkeypatch):
    """This machine's torch has no CUDA device: on a g5.xlarge that means a driver that did not load, and
    the attempt must fail rather than report CPU figures at GPU prices."""
    import pytest

    from instance_benchmarks.agent.main import SetupError, check_cuda

    config = {"instance_type": "g5.xlarge", "gpu_count": 1}
    with pytest.raises(SetupError, match=r"g5.xlarge has 1 GPU\(s\) but the run's python sees no CUDA device"):
        check_cuda(config, Path(sys.executable), tmp_path, None)
    assert check_cuda({"instance_type": "c5.xlarge", "gpu_count": 0}, Path(sys.executable), tmp_path, None) == "not a GPU type"
    stand_in = {"label": "local CPU for g5.xlarge", "stand_in": True}  # the environment supplied these host facts
    assert "skipped" in check_cuda(config, Path(sys.executable), tmp_path, None, stand_in)
    assert "skipped" not in check_cuda({"instance_type": "c5.xlarge", "gpu_count": 0}, Path(sys.executable), tmp_path,
                                       None, stand_in)


def test_the_deadline_counts_from_when_the_user_data_armed_the_watchdog(tmp_path):
    from datetime import datetime, timezone

    from instance_benchmarks.agent.main import WATCHDOG_FILE, watchdog_armed_at

    assert watchdog_armed_at(tmp_path) is None
    (tmp_path / WATCHDOG_FILE).write_text("1795000000\n")
    assert watchdog_armed_at(tmp_path) == datetime.fromtimestamp(1795000000, timezone.utc)


def test_host_facts_come_from_the_environment_as_data(tmp_path):
    """A stand-in host says what it is beside the task (ROOT/host.json); without it the run executes on the
    type its configuration names, launched when the launcher recorded."""
    import json

    import pytest

    from instance_benchmarks.agent.main import agent_host

    config = {"instance_type": "g5.xlarge", "launched_at": "2026-11-22T10:00:00+00:00"}
    assert agent_host(config, tmp_path) == {"label": "ec2 g5.xlarge", "stand_in": False, "peak_tflops": None,
                                            "peak_source": None, "launched_at": "2026-11-22T10:00:00+00:00"}
    (tmp_path / "host.json").write_text(json.dumps({"label": "local box for g5.xlarge", "peak_tflops": 0.5,
                                                    "peak_source": "estimated", "launched_at": "2026-11-22T10:05:00+00:00"}))
    host = agent_host(config, tmp_path)
    assert (host["label"], host["stand_in"], host["peak_tflops"], host["launched_at"]) == \
        ("local box for g5.xlarge", True, 0.5, "2026-11-22T10:05:00+00:00")
    (tmp_path / "host.json").write_text('{"label": "x", "gpus": 8}')
    with pytest.raises(ValueError, match="host.json must be an object with a label"):
        agent_host(config, tmp_path)


def test_on_ec2_the_host_is_what_the_metadata_service_says_and_billing_starts_at_its_pending_time(tmp_path):
    """No host facts beside the task: IMDSv2's instance identity document names the type and the launch
    (`pendingTime`, from which EC2 bills); no metadata service, or a broken answer: the launcher's record."""
    from instance_benchmarks.agent.imds import instance_identity
    from instance_benchmarks.agent.main import agent_host
    from tests.instance_benchmarks.embedded.fake_imds import FakeIMDS

    config = {"instance_type": "g5.xlarge", "launched_at": "2026-11-22T10:00:00+00:00"}
    document = {"instanceType": "g5.xlarge", "pendingTime": "2026-11-22T09:59:41Z", "region": "us-east-1",
                "instanceId": "i-0123456789abcdef0", "accountId": "123456789012"}
    with FakeIMDS(identity=document) as imds:
        assert instance_identity(imds.endpoint) == {"instanceType": "g5.xlarge", "pendingTime": "2026-11-22T09:59:41Z"}
        host = agent_host(config, tmp_path, imds.endpoint)
        assert imds.rejected == 0  # IMDSv2: every GET carried the session token
    assert (host["label"], host["stand_in"], host["launched_at"]) == ("ec2 g5.xlarge", False, "2026-11-22T09:59:41+00:00")
    for broken in (b"not json", b"[]", {"pendingTime": "yesterday"}, {"pendingTime": "2026-11-22T09:59:41"}):
        with FakeIMDS(identity=broken) as imds:
            assert agent_host(config, tmp_path, imds.endpoint)["launched_at"] == config["launched_at"], broken
    with FakeIMDS() as imds:  # no identity document: 404
        assert instance_identity(imds.endpoint) is None
    assert instance_identity(None) is None
    assert agent_host(config, tmp_path, None)["launched_at"] == config["launched_at"]
