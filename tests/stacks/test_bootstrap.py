"""Whether `cdk deploy` needs `cdk bootstrap` first is read from the cloud assembly, and the README says so."""
import json
import re
from pathlib import Path

import aws_cdk as cdk

from stacks.app_stacks import build_stacks
from stacks.config import AppConfig

ROOT = Path(__file__).resolve().parents[2]


def _deploy_section() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Deploying to AWS\n(.*?)(?=^## )", readme, re.MULTILINE | re.DOTALL)
    assert match, "README has no '## Deploying to AWS' section"
    return match.group(1)


def _needs_bootstrap(outdir: Path) -> list[str]:
    """Why the assembly needs the CDK bootstrap stack (empty: it does not)."""
    manifest = json.loads((outdir / "manifest.json").read_text())
    reasons = []
    for name, artifact in manifest["artifacts"].items():
        properties = artifact.get("properties", {})
        if properties.get("requiresBootstrapStackVersion"):
            reasons.append(f"{name} requires bootstrap stack version {properties['requiresBootstrapStackVersion']}")
    for assets in outdir.glob("*.assets.json"):
        for asset_id, asset in json.loads(assets.read_text()).get("files", {}).items():
            for destination in asset["destinations"].values():
                if "cdk-" in destination.get("bucketName", ""):  # the bootstrap stack's staging bucket
                    reasons.append(f"{assets.name}: {asset.get('displayName', asset_id)} -> {destination['bucketName']}")
    return reasons


def test_readme_bootstraps_before_the_first_deploy_when_the_assembly_needs_it(tmp_path):
    app = cdk.App(outdir=str(tmp_path))
    build_stacks(app, AppConfig())
    app.synth()
    reasons = _needs_bootstrap(tmp_path)
    section = _deploy_section()
    deploy = section.find("npx cdk deploy")
    assert deploy >= 0, "the README's deploy section shows no `npx cdk deploy`"
    if reasons:
        bootstrap = section.find("npx cdk bootstrap")
        assert 0 <= bootstrap < deploy, f"`npx cdk bootstrap` must come before the first deploy: {reasons[:2]}"
    # today's stacks (DefaultStackSynthesizer) publish their templates to the bootstrap bucket
    assert any("Template ->" in reason for reason in reasons), reasons
