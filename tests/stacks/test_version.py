"""The stacks say which trainfleet built them (`trainfleet doctor` compares it with its own version)."""
import tomllib
from pathlib import Path

from aws_cdk.assertions import Template

from instance_benchmarks.core.contract import STACKS, TRAINFLEET_VERSION, VERSION_OUTPUT

ROOT = Path(__file__).resolve().parents[2]


def test_storage_network_and_compute_output_the_trainfleet_version(app_stacks):
    stacks = (app_stacks.storage, app_stacks.network, app_stacks.compute)
    assert tuple(stack.stack_name for stack in stacks) == STACKS
    for stack in stacks:
        Template.from_stack(stack).has_output(VERSION_OUTPUT, {"Value": TRAINFLEET_VERSION})


def test_the_version_constant_is_the_package_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == TRAINFLEET_VERSION


def test_doctor_asks_for_the_bootstrap_version_the_assembly_requires(tmp_path):
    import json

    import aws_cdk as cdk

    from instance_benchmarks.doctor import BOOTSTRAP_VERSION
    from stacks.app_stacks import build_stacks
    from stacks.config import AppConfig

    app = cdk.App(outdir=str(tmp_path))
    build_stacks(app, AppConfig())
    app.synth()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    required = [artifact.get("properties", {}).get("requiresBootstrapStackVersion")
                for artifact in manifest["artifacts"].values()]
    assert max(v for v in required if v) == BOOTSTRAP_VERSION
