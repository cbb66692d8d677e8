"""The `trainfleet` command groups, one module each, registered by `instance_benchmarks.cli` (the entry point).

Not called `cli/`: `instance_benchmarks.cli` is the console script's module (`trainfleet =
"instance_benchmarks.cli:main"`) and stays one. Imports run one way: cli.py imports these modules to
register them; they import `shared` (options and the one environment factory) and `output` (the console
and tables), never cli.py.

- campaign.py (+ campaign_view.py, what it prints), models.py, jobs.py, local.py, catalog.py: the groups
- info.py, doctor.py: the two top-level commands
"""
