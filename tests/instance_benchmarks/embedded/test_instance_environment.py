"""Local instances get an allowlisted environment: the embedded default's stand-in instances and its SageMaker
executor see what an instance (or a job's container) has on AWS plus what the stand-ins need, never the host's
environment, so a host GITHUB_TOKEN or AWS credential cannot reach an untrusted script or its logs."""
from __future__ import annotations

import os
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from instance_benchmarks.embedded.sagemaker_executor import LocalSageMakerExecutor
from instance_benchmarks.embedded.worker import HOST_PASSTHROUGH, LocalWorker
from instance_benchmarks.embedded.environment import HostInfo

HOST = HostInfo(label="local test-host (2 CPUs)", peak_tflops=1.0, peak_source="test")
MOTO = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": "http://127.0.0.1:5999",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
SECRETS = {  # the host's, each of which must stay on the host
    "GITHUB_TOKEN": "ghp_hostsecret0000000000000000000000000001",
    "AWS_SECRET_ACCESS_KEY": "hostsecret/AWS+key0000000000000000000002",
    "AWS_SESSION_TOKEN": "hostsecret-session-token-3",
    "AWS_PROFILE": "hostsecret-profile-4",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.2/hostsecret-5",
    "HF_TOKEN": "hf_hostsecret6",
    "SSH_AUTH_SOCK": "/tmp/hostsecret-agent.7",
    "PYTHONPATH": "/hostsecret/8",
    "LD_PRELOAD": "/hostsecret/9.so",
    "TRAINFLEET_AGENT_CONFIG": "hostsecret10",
}


@pytest.fixture
def hostile_host(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PIP_FIND_LINKS", "/host/wheels")  # allowlisted: the stand-in installs from the host's index
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_no_host_variable_reaches_a_stand_in_instance_or_job(hostile_host, tmp_path, name):
    cloud = SimpleNamespace(server=SimpleNamespace(env=MOTO))
    env = LocalWorker(cloud, host=HOST, root=tmp_path).env({"InstanceType": "c5.xlarge"}, tmp_path / "i-1")
    job = {"ResourceConfig": {"InstanceType": "ml.c5.xlarge"}, "Environment": {"TRAINFLEET_CHECKPOINT_DIR": "/opt/ml/c"}}
    job_env = LocalSageMakerExecutor(None, None, MOTO, host=HOST).job_environment(job, tmp_path, tmp_path / "model",
                                                                                  tmp_path / "code", {})
    for environment in (env, job_env):
        assert SECRETS[name] not in environment.values()
        assert environment.get(name) in (None, MOTO.get(name))  # the instance role's stand-in: moto's test keys


def test_a_stand_in_gets_the_instance_s_environment_and_the_named_host_settings(hostile_host, tmp_path):
    cloud = SimpleNamespace(server=SimpleNamespace(env=MOTO))
    env = LocalWorker(cloud, host=HOST, root=tmp_path).env({"InstanceType": "c5.xlarge"}, tmp_path / "i-1")
    assert {k: env[k] for k in MOTO} == MOTO and env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert env["PIP_FIND_LINKS"] == "/host/wheels" and env["HTTPS_PROXY"] == "http://proxy.internal:3128"
    assert env["HOME"] == str(tmp_path / "i-1" / "home") and env["TRAINFLEET_ROOT"] == str(tmp_path / "i-1" / "disk")
    assert env["PATH"].split(":")[0] == str(tmp_path / "i-1" / "bin")  # the shutdown stand-in first
    named = set(HOST_PASSTHROUGH) | set(MOTO) | {"PATH", "HOME", "LANG", "AWS_EC2_METADATA_DISABLED",
                                                 "PIP_DISABLE_PIP_VERSION_CHECK"}
    assert {k for k in env if not k.startswith("TRAINFLEET_")} <= named  # nothing unnamed


def test_a_job_keeps_its_own_environment_and_sm_variables(hostile_host, tmp_path):
    job = {"ResourceConfig": {"InstanceType": "ml.c5.xlarge"},
           "Environment": {"TRAINFLEET_CHECKPOINT_DIR": "/opt/ml/checkpoints", "SM_MODEL_DIR": "/not/this"}}
    env = LocalSageMakerExecutor(None, None, MOTO, host=HOST).job_environment(job, tmp_path, tmp_path / "model",
                                                                              tmp_path / "code", {"lr": "0.1"})
    assert env["TRAINFLEET_CHECKPOINT_DIR"] == str(tmp_path / "checkpoints")
    assert env["SM_MODEL_DIR"] == str(tmp_path / "model") and env["SM_HPS"] == '{"lr": "0.1"}'
    assert env["HOME"] == str(tmp_path / "home") and env["AWS_ENDPOINT_URL"] == MOTO["AWS_ENDPOINT_URL"]


def test_a_user_data_that_prints_its_environment_prints_no_host_secret(hostile_host, tmp_path, monkeypatch):
    """The real worker, the real guard, a user data that dumps its environment and a Python's (as a script
    printing os.environ into script.log would) into its bootstrap log: no host secret in it."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, MOTO[name])
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    user_data = ('#!/bin/bash\nmkdir -p "$TRAINFLEET_ROOT"\nexec > >(tee -a "$TRAINFLEET_ROOT/bootstrap.log") 2>&1\n'
                 "env\npython3 -c 'import os; print(dict(os.environ))'\n")
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        image = ec2.describe_images()["Images"][0]["ImageId"]
        [instance] = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="c5.xlarge",
                                       UserData=user_data)["Instances"]  # boto3 encodes it
        # the server's pid: the worker's host-load meter counts moto's server as trainfleet's own work
        cloud = SimpleNamespace(server=SimpleNamespace(env=MOTO, pid=os.getpid()), client=lambda service: ec2)
        worker = LocalWorker(cloud, host=HOST, root=tmp_path, log=lambda *_: None)
        assert worker.run_instance(instance) == 0
    sandbox = tmp_path / instance["InstanceId"]
    logged = (sandbox / "disk" / "bootstrap.log").read_text() + (sandbox / "console.log").read_text()
    assert "PIP_FIND_LINKS=/host/wheels" in logged and "TRAINFLEET_ROOT=" in logged  # it did print the environment
    assert not [name for name, value in SECRETS.items() if value in logged]
