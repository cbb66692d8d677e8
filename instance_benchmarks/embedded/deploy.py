"""Synthesize the CDK app in-process and deploy its templates with CloudFormation (boto3).

This is what `cdk deploy` does for asset-free stacks; it runs unchanged against AWS and against
moto's server. The launcher then reads the Compute stack's exports from SSM.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from stacks.config import AppConfig

TEMPLATE_BODY_LIMIT = 51_200


@dataclass(frozen=True)
class SynthesizedStack:
    name: str
    template: dict
    dependencies: tuple[str, ...]


def synthesize(config: AppConfig, outdir: str | None = None) -> list[SynthesizedStack]:
    """Templates in deployment order (dependencies first). Makes no AWS call."""
    # jsii's Node runtime warns on Node 20 (still supported by this CDK release); keep the output readable.
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    import aws_cdk as cdk  # heavy (jsii starts Node): only synthesis needs it, after the warning is silenced

    from stacks.app_stacks import build_stacks  # (imports aws_cdk, as above)

    outdir = outdir or tempfile.mkdtemp(prefix="trainfleet-cdk-")
    app = cdk.App(outdir=outdir)
    build_stacks(app, config)
    assembly = app.synth()
    stacks = []
    for artifact in assembly.stacks_recursively:
        deps = tuple(d.id for d in artifact.dependencies if d.id in {s.id for s in assembly.stacks})
        template = json.loads(Path(artifact.template_full_path).read_text())
        stacks.append(SynthesizedStack(artifact.stack_name, template, deps))
    return _deployment_order(stacks)


def _deployment_order(stacks: list[SynthesizedStack]) -> list[SynthesizedStack]:
    by_name = {s.name: s for s in stacks}
    ordered: list[SynthesizedStack] = []

    def visit(stack: SynthesizedStack) -> None:
        if stack in ordered:
            return
        for dep in stack.dependencies:
            if dep in by_name:
                visit(by_name[dep])
        ordered.append(stack)

    for stack in stacks:
        visit(stack)
    return ordered


def _wait(cfn, name: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
        status = stack["StackStatus"]
        if status.endswith("_COMPLETE") and "ROLLBACK" not in status:
            return stack
        if status.endswith("_FAILED") or "ROLLBACK" in status:
            events = cfn.describe_stack_events(StackName=name)["StackEvents"]
            reasons = [e.get("ResourceStatusReason") for e in events if e.get("ResourceStatusReason")]
            raise RuntimeError(f"stack {name} ended in {status}: {reasons[:1]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"stack {name} still {status} after {timeout:.0f}s")
        time.sleep(0.5)


def deploy_stack(cfn, stack: SynthesizedStack, *, timeout: float = 600.0) -> dict[str, str]:
    """Create or update one stack and return its outputs."""
    body = json.dumps(stack.template)
    if len(body) > TEMPLATE_BODY_LIMIT:
        raise ValueError(f"template of {stack.name} is {len(body)} bytes; over the TemplateBody limit")
    args = dict(StackName=stack.name, TemplateBody=body, Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"])
    try:
        cfn.describe_stacks(StackName=stack.name)
        exists = True
    except cfn.exceptions.ClientError:
        exists = False
    if exists:
        try:
            cfn.update_stack(**args)
        except cfn.exceptions.ClientError as error:
            if "No updates are to be performed" not in str(error):
                raise
    else:
        cfn.create_stack(**args)
    described = _wait(cfn, stack.name, timeout)
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def deploy(cfn, stacks: list[SynthesizedStack]) -> dict[str, dict[str, str]]:
    return {stack.name: deploy_stack(cfn, stack) for stack in stacks}
