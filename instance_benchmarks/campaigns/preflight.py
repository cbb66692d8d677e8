"""Preflight: what can be known about a campaign before anything launches or is billed.

Each problem is one input-error line (exit 2), found in `campaign validate` (which skips the network check
with `--offline`), `campaign launch` and `campaign run`, before the first AWS call:

- the repository is reachable and `ref` resolves to a commit (`campaigns.code`);
- in a local repository, `workdir` and `script` exist at that commit (uncommitted changes: a warning);
- every `metric_definitions` regex compiles with exactly one group (checked as the file is read);
- `target.metric` is produced by a metric definition, by the bundled workload's METRICS, or by a JSON line
  the repository's code is known to print (its name as a quoted key, "val_loss", in a local repository's
  text files at the commit);
- `benchmark` has its counter to count (`step` for total_steps or max_steps, `samples` for total_samples),
  produced in one of the same ways.

A remote repository is not fetched here: its files are checked by the instances, and a metric its code
would have to print is named in a warning.
"""
from __future__ import annotations

from instance_benchmarks.campaigns.code import exists_at, local_path, mentions, resolved, uncommitted
from instance_benchmarks.campaigns.spec import _workload_metrics
from instance_benchmarks.core.errors import TrainfleetInputError


def preflight(spec, *, source: str = "campaign", offline: bool = False, warn=print):
    """The checks above; returns `spec` bound to its commit (unbound: a remote repository with `offline`)."""
    local = local_path(spec.repo) is not None
    bound = resolved(spec) if local or not offline else spec
    if local:
        _check_paths(bound, source)
        note = uncommitted(bound.repo)
        if note:
            warn(note)
    _check_produced(bound, source, warn)
    return bound


def _check_paths(spec, source: str) -> None:
    short = spec.commit[:12]
    if spec.workdir and not exists_at(spec.repo, spec.commit, spec.workdir, "tree"):
        raise TrainfleetInputError(f"{source}: workdir {spec.workdir!r} is not a folder of {local_path(spec.repo)} "
                                   f"at {spec.ref} ({short})")
    if spec.script:  # a script is run from the workdir (the `run` commands are the user's own)
        path = f"{spec.workdir}/{spec.script}" if spec.workdir else spec.script
        if not exists_at(spec.repo, spec.commit, path, "blob"):
            raise TrainfleetInputError(f"{source}: script {path!r} is not in {local_path(spec.repo)} at {spec.ref} "
                                       f"({short}); committed changes only are run")


def needed_metrics(spec) -> dict[str, str]:
    """{metric name: what needs it} for the metrics a campaign cannot do without."""
    needed = {}
    if spec.target:
        needed[spec.target["metric"]] = "target.metric"
    benchmark = spec.benchmark or {}
    if "total_samples" in benchmark:
        needed["samples"] = "benchmark (total_samples counts `samples`)"
    if "total_steps" in benchmark or "max_steps" in benchmark:
        needed["step"] = "benchmark (total_steps and max_steps count `step`)"
    return needed


def _check_produced(spec, source: str, warn) -> None:
    needed = needed_metrics(spec)
    produced = {d["name"] for d in spec.metric_definitions}
    if spec.workload:
        produced |= set(_workload_metrics(spec.workload))
    missing = [name for name in needed if name not in produced]
    if not missing:
        return
    if spec.workload:
        name = missing[0]
        raise TrainfleetInputError(f"{source}: {needed[name]} needs the metric {name!r}, which {spec.workload} does "
                                   f"not print (its metrics: {', '.join(sorted(produced))})")
    if local_path(spec.repo) is None or spec.commit is None:
        for name in missing:
            warn(f"warning: {needed[name]} needs the metric {name!r}, which no metric definition produces: the "
                 "script must print it as a JSON line (a remote repository is not read before launch)")
        return
    printed = mentions(spec.repo, spec.commit, missing)
    for name in missing:
        if name not in printed:
            raise TrainfleetInputError(
                f"{source}: {needed[name]} needs the metric {name!r}, but nothing produces it: no metric_definitions "
                f"entry is named {name!r} and no file of {local_path(spec.repo)} at {spec.commit[:12]} prints a "
                f"JSON key \"{name}\"; add {{name: {name}, regex: '...'}} to metric_definitions")
