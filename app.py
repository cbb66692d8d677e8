#!/usr/bin/env python3
"""CDK entry point. Configuration enters here, once, from context (`cdk.json` and `-c key=value`)."""
import sys

import aws_cdk as cdk

from instance_benchmarks.core.errors import TrainfleetInputError
from stacks.app_stacks import build_stacks
from stacks.config import config_from_context

app = cdk.App()
try:
    config = config_from_context(app.node.try_get_context)
except TrainfleetInputError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
build_stacks(app, config)
app.synth()
