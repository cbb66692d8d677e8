"""How busy this machine was while a stand-in instance ran on it, and how much of that was someone else's.

The embedded default runs each instance on this machine, where other processes (a build, a browser, other
users) may share the CPUs with the training script and slow it down: figures measured then are slower and
noisier than the machine can do. `measure.hostload.HostLoadMeter` brackets one instance and splits the machine's busy CPU
time (/proc/stat) into the instance's own (every process under its guard, counted as each is reaped:
RUSAGE_CHILDREN of this process), trainfleet's own (this process and moto's server) and the rest, which
other processes used. The attempt records it as `host_load` (launch.json); `campaign run` and the report
warn when other processes used `COMPETING_CPUS` or more on average. Linux only; elsewhere nothing is recorded.
"""
from __future__ import annotations

from instance_benchmarks.campaigns.report_stats import COMPETING_CPUS
from instance_benchmarks.campaigns.store import read_json, write_json


def record_host_load(location, load: dict | None, run_id: str, log, **attempt) -> None:
    """`load` as `host_load` on the attempt of the run's launch.json (at `location`) whose fields match
    `attempt` (attempt=N, job_name=...), and a warning through `log` when other processes competed."""
    if load is None:
        return
    document = read_json(location, "launch.json") or {}
    entries = [a for a in document.get("attempts") or [] if isinstance(a, dict)
               and all(a.get(key) == value for key, value in attempt.items())]
    for entry in entries:
        entry["host_load"] = load
    if entries:
        write_json(location, "launch.json", document)
    if warning := competition_warning(load, run_id):
        log(warning)


def competition_warning(load: dict | None, run_id: str) -> str | None:
    """One line when other processes competed for this machine's CPUs while `run_id` ran, else None."""
    if not load or load["other_cpus"] < COMPETING_CPUS:
        return None
    return (f"warning: other processes used {load['other_cpus']:.1f} of {load['cpus']} CPUs on average while {run_id} "
            f"ran here (its own processes {load['run_cpus']:.1f}): its timings are slower and noisier than on an "
            "idle machine")
