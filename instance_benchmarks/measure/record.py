"""The run record (`result.json`, schema 2): its one builder, its host facts and the migration of older records.

Stdlib only, so that the agent imports it on an instance (whose image may hold another pydantic, or none: the
agent installs nothing it can do without). The typed model of the same record, with its JSON Schema, is
`measure.record_model`, which the readers use; a test checks that what `build_result` writes validates there.

Everything a backend alone knows goes into `backend`, a sub-record named by the backend (`{"name": "ec2"}`,
`{"name": "sagemaker", "job_name": ..., "timing_source": ...}`); the runner and the report read only the
neutral fields. Where a run really executed is `host`: `{label, stand_in, peak_tflops, peak_source}`, supplied
as data by the environment (a stand-in host says so in `HOST_FILE`; on AWS the agent describes the instance).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_VERSION = 2
# Host facts an environment hands a run beside its task: the agent reads `<root>/HOST_FILE` on an instance, a
# SageMaker job's output may carry `trainfleet/HOST_FILE`; absent, the run executed on the type it names.
HOST_FILE = "host.json"
HOST_KEYS = ("label", "stand_in", "peak_tflops", "peak_source", "launched_at", "job_seconds")
# The label a schema-1 record stored in `measured_on` for a run on the embedded default's stand-in host.
V1_STAND_IN = "local"


def host_facts(label: str, *, stand_in: bool = False, peak_tflops: float | None = None,
               peak_source: str | None = None) -> dict:
    """Where a run executed: the instance type it names (`stand_in` False), or a stand-in host for it."""
    return {"label": str(label), "stand_in": bool(stand_in), "peak_tflops": peak_tflops, "peak_source": peak_source}


def read_host_file(path: Path) -> dict | None:
    """The host facts an environment supplied (see HOST_FILE), or None when there are none. A file that is not
    an object of known keys is refused (ValueError): a run must not be labelled by what it cannot read."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return parse_host(text, str(path))


def parse_host(text: str | bytes, what: str) -> dict:
    try:
        facts = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError(f"{what} is not JSON") from None
    if not isinstance(facts, dict) or not isinstance(facts.get("label"), str) or set(facts) - set(HOST_KEYS):
        raise ValueError(f"{what} must be an object with a label and only {', '.join(HOST_KEYS)}")
    for key, kind in (("stand_in", bool), ("peak_source", str), ("launched_at", str)):
        if facts.get(key) is not None and not isinstance(facts[key], kind):
            raise ValueError(f"{what}: {key} must be a {kind.__name__}")
    for key in ("peak_tflops", "job_seconds"):
        value = facts.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf")):
            raise ValueError(f"{what}: {key} must be a finite number >= 0")
    if facts.get("launched_at") is not None:
        try:
            datetime.fromisoformat(facts["launched_at"])
        except ValueError:
            raise ValueError(f"{what}: launched_at must be an ISO 8601 time") from None
    return facts


def catalog_peak(peaks: dict | None, precision: str, nodes: int = 1) -> float | None:
    """The dense peak (TFLOPS) of `nodes` instances of a type for the precision a run recorded, from the
    catalog's peaks (InstanceSpec.peaks()); None when the type has none for it (a tf32 run is never measured
    against fp32). Peaks recorded before tf32 existed carry fp32 and fp16 only: bf16 reads fp16 there."""
    peaks = peaks or {}
    peak = peaks[precision] if precision in peaks else peaks.get("fp16") if precision == "bf16" else None
    return peak * nodes if peak else None


def _sum(attempts: list[dict], key: str) -> float:
    return sum(float(a.get(key) or 0.0) for a in attempts)


def spot_savings(attempts: list[dict]) -> float | None:
    """1 - what the attempts cost / what they would have cost on demand. EC2 bills the spot price for the
    billed seconds; SageMaker bills its one price for fewer (billable) seconds than the job ran: both read
    as a cost against the on-demand price of the longer of the billed and the run seconds."""
    paid = on_demand = 0.0
    for attempt in attempts:
        price = attempt.get("price") or {}
        rate = price.get("on_demand_usd_per_hour") or price.get("usd_per_hour") or 0.0
        paid += float(attempt.get("cost_usd") or 0.0)
        on_demand += max(float(attempt.get("billed_seconds") or 0.0), float(attempt.get("run_seconds") or 0.0)) * rate / 3600
    return 1 - paid / on_demand if on_demand else None


def build_result(*, campaign: str, run_id: str, backend: dict, attempts: list[dict], host: dict, figures: dict,
                 hyperparameters: dict | None, train_artifacts: dict, final: dict | None, price: dict | None = None,
                 instance_type: str | None = None, market: str | None = None, nodes: int = 1,
                 precision: str | None = None, **facts) -> dict:
    """The one `result.json` of a complete run, from its attempts in launch.json (each settled with `outcome`,
    `cost_usd`, `run_seconds`, `billed_seconds`, `setup_seconds`...), where it executed (`host_facts`), the
    figures measured (campaigns.harness.summarize) and what else is known of it (`facts`: workload, code,
    repo, ref, script, world_size, fingerprint, utilization, target, benchmark_slice, prediction).
    The instance type, market and price are the last attempt's unless given."""
    if not isinstance(backend, dict) or not backend.get("name"):
        raise ValueError("a run record's backend is a sub-record with its name")
    last = attempts[-1] if attempts else {}
    price = price or last.get("price") or {}
    usd_per_hour = float(price.get("usd_per_hour") or 0.0)
    setup = _sum(attempts, "setup_seconds")
    return {
        "schema_version": SCHEMA_VERSION, "status": "complete",
        "campaign": campaign, "run_id": run_id, "backend": dict(backend), "host": dict(host),
        "instance_type": instance_type or last.get("instance_type"), "market": market or last.get("market"),
        "price": price, "nodes": int(nodes or 1), "hyperparameters": hyperparameters, "precision": precision,
        "attempts": len(attempts),
        "interruptions": sum(1 for a in attempts if a.get("outcome") == "interrupted"),
        "cost_usd": _sum(attempts, "cost_usd"),
        "run_seconds": _sum(attempts, "run_seconds"),
        "billable_seconds": _sum(attempts, "billed_seconds"),
        "setup_seconds": setup, "boot_seconds": _sum(attempts, "boot_seconds"),
        "setup_cost_usd": setup * usd_per_hour / 3600,
        "spot_savings": spot_savings(attempts) if (market or last.get("market")) == "spot" else 0.0,
        "train_artifacts": dict(train_artifacts), "final": final or {},
        "completed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **{k: v for k, v in facts.items() if v is not None or k in ("target",)},
        **figures,
    }


def migrate_result(record: dict) -> dict:
    """A `result.json` of schema 1 (before the record was one: `backend` a name, `measured_on`, `host` a label,
    `peak_tflops`/`peak_source` beside it, EC2's `instance_seconds` or SageMaker's `training_seconds`,
    `job_name`/`timing_source` at the top) as schema 2; a record of schema 2 as it is."""
    if not isinstance(record, dict) or record.get("schema_version", 1) != 1:
        return record
    old = dict(record)
    name = old.pop("backend", None) or "ec2"
    backend = {"name": name}
    for key in ("job_name", "timing_source"):
        if key in old:
            backend[key] = old.pop(key)
    stand_in = old.pop("measured_on", None) == V1_STAND_IN
    label = old.pop("host", None)
    where = " ".join(str(part) for part in (name, old.get("instance_type")) if part)
    host = host_facts(label if isinstance(label, str) else where, stand_in=stand_in,
                      peak_tflops=old.pop("peak_tflops", None), peak_source=old.pop("peak_source", None))
    seconds = old.pop("instance_seconds", None)
    training = old.pop("training_seconds", None)
    return {**old, "schema_version": SCHEMA_VERSION, "backend": backend, "host": host,
            "run_seconds": seconds if seconds is not None else training}


# launch.json attempts of schema 1 name the time a resource ran and the resource by the backend's own words
_V1_SECONDS = ("instance_seconds", "training_seconds")
_V1_RESOURCE = ("instance_id", "job_name")


def migrate_attempt(attempt: dict) -> dict:
    """A launch.json attempt with the neutral `run_seconds`, `billed_seconds` and `resource` that schema 2's
    writers record, filled in from schema 1's backend-specific keys where it lacks them (the backend's own
    keys stay: a backend's teardown finds its attempts by them)."""
    if not isinstance(attempt, dict):
        return attempt
    filled = dict(attempt)
    if "run_seconds" not in filled:
        seconds = next((filled[k] for k in _V1_SECONDS if filled.get(k) is not None), None)
        if seconds is not None:
            filled["run_seconds"] = seconds
    if "billed_seconds" not in filled and filled.get("billable_seconds") is not None:
        filled["billed_seconds"] = filled["billable_seconds"]
    if "resource" not in filled:
        resource = next((filled[k] for k in _V1_RESOURCE if filled.get(k)), None)
        if resource is not None:
            filled["resource"] = resource
    return filled
