"""What a run measured, read the same way on the instance (the agent) and on the launcher (the report).

A leaf: the standard library, google-re2, pydantic (the record models the readers use; never imported by the
agent) and `training_scripts.throughput` only, no other `instance_benchmarks` package. `metrics` parses a
script's metric lines, `harness` summarises them (throughput, time and cost to a target, spread), `slices`
predicts a whole job from a slice of it, `record` builds the one run record (`result.json`) and migrates old
ones, `record_model` reads records through typed models.
"""
