import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from instance_benchmarks.cli import app
from tests.instance_benchmarks.conftest import spec_dict

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _trainfleet(*args, env=None):
    return subprocess.run([sys.executable, "-c", "from instance_benchmarks.cli import main; main()", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def test_validate_prints_runs_and_estimate():
    result = runner.invoke(app, ["campaign", "validate", "examples/campaign.yaml"])
    assert result.exit_code == 0, result.output
    assert "12 runs" in result.output and "worst case $0.6932" in result.output  # 6 batch sizes x 2 repeats


def test_catalog_list():
    result = runner.invoke(app, ["catalog", "list", "--region", "us-west-2"])
    assert result.exit_code == 0 and "p3.2xlarge" in result.output


def test_validate_refuses_types_without_a_working_image_in_one_line(tmp_path):
    for itype, reason in (("p3.2xlarge", "NVIDIA V100 (Volta)"), ("t3.micro", "too little for PyTorch")):
        path = tmp_path / f"{itype}.yaml"
        path.write_text(yaml.safe_dump(spec_dict(matrix={"instance_type": [itype], "batch_size": [3]})))
        result = _trainfleet("campaign", "validate", str(path))
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert f"{itype} cannot run trainfleet on EC2" in result.stderr and reason in result.stderr


def test_bad_campaign_file_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec_dict(matrix={"instance_type": ["c5.xlarge"], "batch_size": [-3]})))
    result = _trainfleet("campaign", "validate", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "batch_size must be positive" in result.stderr


def test_over_budget_validate_exits_2(tmp_path):
    spec = tmp_path / "big.yaml"
    spec.write_text(yaml.safe_dump(spec_dict(budget_usd=0.5, matrix={"instance_type": ["g5.xlarge"], "batch_size": [3, 5]})))
    result = _trainfleet("campaign", "validate", "--offline", str(spec))  # its repo is not reached from here
    assert result.returncode == 2 and "exceeds the budget" in result.stderr


def test_missing_file_and_unknown_command():
    assert _trainfleet("campaign", "validate", "nope.yaml").returncode == 2
    result = _trainfleet("campaign", "fly")
    assert result.returncode == 2 and result.stderr.startswith("error: ")


def test_a_local_repository_is_refused_on_aws_before_any_call(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true"}
    result = _trainfleet("campaign", "run", "examples/campaign.yaml", "--yes", env=env)
    assert result.returncode == 2 and "only the embedded default (--local) can clone it" in result.stderr


def test_missing_credentials_is_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    result = _trainfleet("campaign", "status", "sweep", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: no AWS credentials found: configure a profile or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"


def test_expired_credentials_is_one_line(monkeypatch, capsys):
    import boto3
    import pytest
    from botocore.stub import Stubber

    from instance_benchmarks import cli

    ssm = boto3.client("ssm", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(ssm)
    stubber.add_client_error("get_parameters", service_error_code="ExpiredTokenException",
                             service_message="The security token included in the request is expired")
    stubber.activate()
    from instance_benchmarks.environment import Environment

    monkeypatch.setattr(Environment, "client", lambda self, service: ssm)
    monkeypatch.setattr(sys, "argv", ["trainfleet", "campaign", "status", "sweep"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: AWS rejected the credentials (ExpiredTokenException): refresh them and try again\n"


def test_every_read_command_takes_local_and_state():
    for command in (["campaign", "status"], ["campaign", "collect"], ["campaign", "logs"], ["campaign", "run"],
                    ["models", "list"], ["models", "download"], ["info"], ["local", "up"]):
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "--state" in result.output and ("--local" in result.output or command == ["local", "up"]), command


def test_state_without_local_is_refused_before_any_aws_call(tmp_path):
    result = _trainfleet("models", "list", "--state", str(tmp_path / "s"))
    assert result.returncode == 2 and result.stderr.strip() == "error: --state names the --local state folder: add --local"
    assert not (tmp_path / "s").exists()
