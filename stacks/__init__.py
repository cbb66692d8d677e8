"""trainfleet CDK stacks (wiring) and constructs (building blocks)."""
