"""TEMPORARY (issue 22, imports branch): `campaigns/spec.py`, rewritten on the spec branch, still imports the metric
parser from here. The merger points that import at `instance_benchmarks.measure.metrics`, deletes this file and the
`campaigns.spec -> agent.metrics` entry of KNOWN_PENDING in tests/test_import_graph.py."""
from instance_benchmarks.measure.metrics import MetricDefinitionError, parse_definitions  # noqa: F401
