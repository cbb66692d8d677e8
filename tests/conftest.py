"""Shared fixtures: moto credentials -> mocked AWS -> clients (created after the mock starts)."""
from __future__ import annotations

import os

import boto3
import pytest
from hypothesis import settings
from moto import mock_aws

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
REGION = "us-east-1"
# pytest-xdist's workers inherit COLUMNS=80 (the controller's terminal); the CLI honours COLUMNS when piped,
# so tests see the width a CI log sees (none set) unless a test sets COLUMNS itself.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

# Property tests are deterministic by default (CI runs exactly the examples a developer ran); a failure
# they find is a bug to fix plus a regression test. `HYPOTHESIS_PROFILE=fuzz` explores further, locally.
settings.register_profile("deterministic", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("fuzz", max_examples=2000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(autouse=True)
def local_state_folder(tmp_path_factory, monkeypatch):
    """`--local` state never lands in the real home: each test gets its own folder (TRAINFLEET_STATE)."""
    folder = tmp_path_factory.mktemp("trainfleet-state")
    monkeypatch.setenv("TRAINFLEET_STATE", str(folder))
    return folder


@pytest.fixture
def aws_credentials(monkeypatch):
    """Fake credentials so nothing can ever reach a real account."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture
def aws(aws_credentials):
    with mock_aws():
        yield


@pytest.fixture
def s3(aws):
    return boto3.client("s3", region_name=REGION)


@pytest.fixture
def ec2(aws):
    return boto3.client("ec2", region_name=REGION)


@pytest.fixture
def ssm(aws):
    return boto3.client("ssm", region_name=REGION)


@pytest.fixture
def bucket(s3):
    s3.create_bucket(Bucket="trainfleet-test")
    return "trainfleet-test"
