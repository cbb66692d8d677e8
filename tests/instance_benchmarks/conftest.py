from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import boto3
import pytest

from instance_benchmarks.backends.infrastructure import resolve_infrastructure
from instance_benchmarks.campaign_file import parse_spec
from instance_benchmarks.embedded.cloud import local_config, register_local_ami
from instance_benchmarks.embedded.deploy import deploy, synthesize
from instance_benchmarks.environment import Environment

REGION = "us-east-1"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def templates():
    return synthesize(local_config())


@pytest.fixture
def cfn(aws):
    return boto3.client("cloudformation", region_name=REGION)


@pytest.fixture
def infra(aws, templates, ec2, ssm, cfn):
    """The real Storage/Network/Compute templates deployed into in-process moto."""
    register_local_ami(ec2, ssm)
    deploy(cfn, templates)
    return resolve_infrastructure(ssm)


@pytest.fixture
def env(infra):
    """The AWS environment, its calls going to in-process moto."""
    return Environment(REGION)


def make_git_repo(path: Path, files: dict[str, str], message: str = "initial") -> str:
    """A local git repository holding `files`; returns its commit SHA."""
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", message], cwd=path, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, check=True, capture_output=True, text=True).stdout.strip()


def commit_change(path: Path, files: dict[str, str], message: str = "change") -> str:
    """Write `files` into the git repository at `path` and commit them; returns the new commit SHA."""
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "add", *files], cwd=path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", message], cwd=path, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="session")
def workloads_repo(tmp_path_factory) -> Path:
    """A git repository holding this tree's training_scripts/ (the bundled workloads), as a user's fork would."""
    repo = tmp_path_factory.mktemp("workloads") / "repo"
    shutil.copytree(ROOT / "training_scripts", repo / "training_scripts", ignore=shutil.ignore_patterns("__pycache__"))
    make_git_repo(repo, {"README.md": "bundled workloads\n"})
    return repo


def spec_dict(**changes) -> dict:
    base = {
        "campaign": "sweep", "workload": "cartpole_pg", "repo": "https://github.com/acme/trainfleet.git",
        "ref": "main", "region": REGION, "market": "spot", "max_runtime_minutes": 30, "budget_usd": 10.0,
        "hyperparameters": {"epochs": 3}, "matrix": {"instance_type": ["c5.xlarge"], "batch_size": [3, 5, 7, 10, 12, 15]},
        "target": {"metric": "final10_reward", "value": 195},
    }
    base.update(changes)
    return base


FAKE_COMMIT = "c0ffee00" * 5  # what `main` of https://github.com/acme/... resolves to in these tests


@pytest.fixture(autouse=True)
def fake_remotes(monkeypatch):
    """`git ls-remote` without the network: https://github.com/acme/* lists a branch `main` at FAKE_COMMIT;
    other URLs (file://, unreachable ones) go to git itself."""
    from instance_benchmarks.campaigns import code

    real = code.remote_refs

    def remote_refs(repo: str) -> dict[str, str]:
        if repo.startswith("https://github.com/acme/"):
            return {"HEAD": FAKE_COMMIT, "refs/heads/main": FAKE_COMMIT}
        return real(repo)

    monkeypatch.setattr(code, "remote_refs", remote_refs)


def bound_spec(data: dict, *args, **kwargs):
    """parse_spec, then bound to the commit its ref names, as `campaign run` and `launch` bind it: the run
    ids a launch uses (they name the code)."""
    from instance_benchmarks.campaigns.code import resolved

    return resolved(parse_spec(data, *args, **kwargs))


@pytest.fixture
def spec():
    return bound_spec(spec_dict())


def torn_down_run(env, bucket: str, **last_attempt):
    """A one-run campaign `sweep` launched and torn down, its last attempt in launch.json updated with
    `last_attempt`; returns (spec, run, the run's S3 location)."""
    from instance_benchmarks import runner
    from instance_benchmarks.campaigns.store import read_json, run_location, write_json

    spec = bound_spec(spec_dict(matrix={"instance_type": ["c5.xlarge"], "batch_size": [3]}))
    runner.launch(env, spec)
    runner.teardown(env, "sweep")
    [run] = spec.runs()
    location = run_location(env.client("s3"), bucket, "sweep", run.run_id)
    record = read_json(location, "launch.json")
    record["attempts"][-1].update(last_attempt)
    write_json(location, "launch.json", record)
    return spec, run, location
