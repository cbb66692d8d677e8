"""How cdk-nag names values that cross stacks, for acknowledgements that name one finding exactly; checkov's
acknowledgements (template metadata) on one resource each."""
from __future__ import annotations

import hashlib
import json
import re

from aws_cdk import CfnResource, Stack
from aws_cdk import aws_s3 as s3


def exports_arn(scope, ssm_prefix: str) -> str:
    """The ARN of every SSM parameter under the stack's export prefix (`/trainfleet/*`)."""
    return Stack.of(scope).format_arn(service="ssm", resource="parameter", resource_name=f"{ssm_prefix.strip('/')}/*")


def exports_finding(ssm_prefix: str) -> str:
    """`exports_arn` as cdk-nag prints it in an IAM5 finding."""
    return f"Resource::arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter/{ssm_prefix.strip('/')}/*"


def imported_bucket_arn(bucket: s3.IBucket) -> str:
    """`bucket.bucket_arn` as cdk-nag prints it in another stack's policy: the name of the export CDK creates
    for it (aws-cdk-lib core refs.ts: stack name, then makeUniqueId(["Exports", "Output" + the reference]))."""
    stack = Stack.of(bucket)
    resource = bucket.node.default_child
    assert isinstance(resource, CfnResource), "an imported bucket is referenced by name, not exported"
    reference = json.dumps({"Fn::GetAtt": [stack.get_logical_id(resource), "Arn"]}, separators=(",", ":"))
    components = ["Exports", f"Output{reference}"]
    digest = hashlib.md5("/".join(components).encode(), usedforsecurity=False).hexdigest()[:8].upper()  # an id, as CDK makes it
    return f"{stack.stack_name}:{''.join(re.sub('[^A-Za-z0-9]', '', c) for c in components)}{digest}"


def checkov_skip(resource, reasons: dict[str, str]) -> None:
    """checkov's per-resource acknowledgement (`Metadata.checkov.skip`), one reason per check; the README's
    security table lists them all (tests/stacks/test_audit.py)."""
    assert isinstance(resource, CfnResource), resource
    resource.add_metadata("checkov", {"skip": [{"id": check, "comment": reason} for check, reason in reasons.items()]})
