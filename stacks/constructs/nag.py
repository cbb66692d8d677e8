"""How cdk-nag names values that cross stacks, for acknowledgements that name one finding exactly."""
from __future__ import annotations

import hashlib
import json
import re

from aws_cdk import CfnResource, Stack
from aws_cdk import aws_s3 as s3


def imported_bucket_arn(bucket: s3.IBucket) -> str:
    """`bucket.bucket_arn` as cdk-nag prints it in another stack's policy: the name of the export CDK creates
    for it (aws-cdk-lib core refs.ts: stack name, then makeUniqueId(["Exports", "Output" + the reference]))."""
    stack = Stack.of(bucket)
    resource = bucket.node.default_child
    assert isinstance(resource, CfnResource), "an imported bucket is referenced by name, not exported"
    reference = json.dumps({"Fn::GetAtt": [stack.get_logical_id(resource), "Arn"]}, separators=(",", ":"))
    components = ["Exports", f"Output{reference}"]
    digest = hashlib.md5("/".join(components).encode()).hexdigest()[:8].upper()  # noqa: S324 (an id, not security)
    return f"{stack.stack_name}:{''.join(re.sub('[^A-Za-z0-9]', '', c) for c in components)}{digest}"
