"""The typed models of trainfleet's records in S3: `result.json` (schema 2, `RunRecord`), `launch.json`
(`LaunchRecord`) and `campaign.json` (`CampaignDocument`), read through `parse_document`.

The bucket is untrusted input (training scripts write to it under the instance role), so a reader parses
every record here: `{}`, a price that is a string, a run id that is not its folder's, JSON nested too deep to
read become one `RecordError` line naming the file and the field, never a traceback. Older records read too:
`parse_document` migrates them first (measure.record.migrate_result / migrate_attempt); a result.json that
does not name its run is its folder's.

The writer is `measure.record.build_result` (stdlib, for the agent on an instance); RESULT_SCHEMA is the JSON
Schema of what it writes, checked into the repository beside this module (a test keeps the two equal).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from instance_benchmarks.measure.record import SCHEMA_VERSION, migrate_attempt, migrate_result

RESULT_SCHEMA = Path(__file__).with_name("result.schema.json")
MAX_RECORD_BYTES = 64 << 20  # a record is a few KB; anything this big is refused before it is parsed

Money = Annotated[float, Field(allow_inf_nan=False)]  # finite; a refund or a bad figure still reads (the report shows it)
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class RecordError(ValueError):
    """A record in the bucket that cannot be read: one line naming the file and what is wrong."""


class _Open(BaseModel):
    """Typed where trainfleet reads; other keys kept (what later versions and the scripts add)."""

    model_config = ConfigDict(extra="allow")


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Price(_Open):
    usd_per_hour: Money
    on_demand_usd_per_hour: Money | None = None
    storage_usd_per_hour: Money | None = None
    source: str | None = None
    quoted_at: str | None = None
    market: str | None = None


class Host(_Closed):
    """Where the run executed: the instance type it names, or a stand-in host for it (the embedded default)."""

    label: str
    stand_in: bool = False
    peak_tflops: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    peak_source: str | None = None


class Ec2Facts(_Closed):
    name: Literal["ec2"]


class SageMakerFacts(_Closed):
    name: Literal["sagemaker"]
    job_name: str | None = None
    timing_source: str | None = None  # describe_training_job, the job's own output, or its start/end times


class OtherBackendFacts(_Open):
    """A backend this version does not know by name (a newer one): its facts are kept, never read."""

    name: str


def _backend_tag(value: Any) -> str:
    name = value.get("name") if isinstance(value, dict) else getattr(value, "name", None)
    return name if name in ("ec2", "sagemaker") else "other"


BackendFacts = Annotated[Union[Annotated[Ec2Facts, Tag("ec2")], Annotated[SageMakerFacts, Tag("sagemaker")],
                               Annotated[OtherBackendFacts, Tag("other")]], Discriminator(_backend_tag)]


class RunRecord(_Open):
    """result.json: a complete run (written last, after its artifacts). What the builder always writes is
    typed here; the readers require only what identifies the run, where it ran and on which backend, so that
    a record some fields short still reads (each reader says what it misses)."""

    schema_version: Literal[2]
    status: Literal["complete"] = "complete"
    run_id: str
    backend: BackendFacts
    host: Host
    campaign: str | None = None
    instance_type: str | None = None
    market: str | None = None
    price: Price | None = None
    nodes: Annotated[int, Field(ge=1)] = 1
    hyperparameters: dict[str, Any] | None = None
    precision: str | None = None
    attempts: Annotated[int, Field(ge=0)] | None = None
    interruptions: Annotated[int, Field(ge=0)] | None = None
    cost_usd: Money | None = None
    run_seconds: Seconds | None = None
    billable_seconds: Seconds | None = None
    setup_seconds: Seconds | None = None
    boot_seconds: Seconds | None = None
    setup_cost_usd: Money | None = None
    spot_savings: Annotated[float, Field(allow_inf_nan=False)] | None = None
    train_artifacts: dict[str, Any] = {}  # name -> SHA-256, each checked by the reader that fetches it (models.py)
    final: dict[str, Any] | None = None
    completed_at: str | None = None
    workload: str | None = None
    code: str | None = None
    repo: str | None = None
    ref: str | None = None
    script: str | None = None
    world_size: Annotated[int, Field(ge=1)] | None = None
    benchmark_slice: bool = False
    fingerprint: dict[str, Any] | None = None
    utilization: dict[str, Any] | None = None
    target: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    # the figures (campaigns.harness.summarize)
    samples_per_s: float | None = None
    sec_per_step: float | None = None
    train_seconds: float | None = None
    mfu: float | None = None
    final_metric: float | None = None
    primary_metric: str | None = None


class Attempt(_Open):
    """One attempt in launch.json; its backend's own keys (instance_id, job_name...) are kept, never read."""

    attempt: Annotated[int, Field(ge=1)] | None = None
    backend: str | None = None
    outcome: str | None = None
    instance_type: str | None = None
    market: str | None = None
    price: Price | None = None
    cost_usd: Money | None = None
    run_seconds: Seconds | None = None
    billed_seconds: Seconds | None = None
    resource: str | None = None
    launched_at: str | None = None
    ended_at: str | None = None


class LaunchRecord(_Open):
    """launch.json: a run's attempts, each settled with its outcome and cost."""

    run_id: str | None = None
    label: str | None = None
    hyperparameters: dict[str, Any] | None = None
    attempts: list[Attempt] = []


class BackendEntry(_Open):
    spec: dict[str, Any]
    run_ids: list[str] | None = None
    quotes: dict[str, Any] | None = None
    catalog_as_of: str | None = None


class CampaignDocument(_Open):
    """campaign.json: one entry per backend that launched runs of the campaign, and the region they went to."""

    campaign: str | None = None
    region: str | None = None
    backends: dict[str, BackendEntry] = {}


MODELS = {"result.json": RunRecord, "launch.json": LaunchRecord, "campaign.json": CampaignDocument}


def _where(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"] if not str(part).startswith("function-")) or "the record"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{field}: {first['msg']}{more}"


def load_json(data: bytes | str, name: str) -> Any:
    """The JSON value of a record file, or RecordError: not JSON, too large, or nested too deep to read."""
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(f"{name} is {len(data)} bytes, over {MAX_RECORD_BYTES}: not read")
    try:
        return json.loads(data)
    except RecursionError:
        raise RecordError(f"{name} is nested too deep to read") from None
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise RecordError(f"{name} is not JSON ({str(error).splitlines()[0][:80]})") from None


def parse_document(name: str, value: Any, *, run_id: str | None = None) -> dict:
    """`value` (result.json, launch.json or campaign.json, already JSON-decoded) checked against its model, after
    the migration of an older shape; returned as the migrated dict, every key kept. `run_id`: the run's folder,
    which the record must name (a result.json of another run is refused). RecordError: one line."""
    if not isinstance(value, dict):
        raise RecordError(f"{name} holds a {type(value).__name__}, not an object")
    if name == "result.json":
        if run_id is not None and "run_id" not in value:  # the folder names the run
            value = {**value, "run_id": run_id}
        value = migrate_result(value)
        if value.get("schema_version") != SCHEMA_VERSION:
            raise RecordError(f"result.json has schema_version {str(value.get('schema_version'))[:20]!r}; this "
                              f"trainfleet reads 1 and {SCHEMA_VERSION}")
    elif name == "launch.json" and isinstance(value.get("attempts"), list):
        value = {**value, "attempts": [migrate_attempt(a) for a in value["attempts"]]}
    try:
        MODELS[name].model_validate(value)
    except ValidationError as error:
        raise RecordError(f"{name}: {_where(error)}") from None
    except RecursionError:
        raise RecordError(f"{name} is nested too deep to read") from None
    named = value.get("run_id")
    if run_id is not None and name != "campaign.json" and named is not None and named != run_id:
        raise RecordError(f"{name} names run {str(named)[:80]!r}, not {run_id!r} (its folder)")
    return value


def result_schema() -> dict:
    """The JSON Schema of result.json (schema 2), as the model gives it."""
    return RunRecord.model_json_schema()


# One metric line (metrics.jsonl, the agent's progress.json): what a script printed, so untrusted. Scalars
# only, finite, names and texts bounded; the rest of the line still reads (a diverged `loss: NaN` drops that
# value, not the line's step).
MAX_METRIC_KEYS = 256
MetricName = Annotated[str, Field(min_length=1, max_length=128)]
MetricValue = Annotated[Union[  # chosen by the value's own type (a float branch would take a too-large int)
    Annotated[bool, Tag("bool")], Annotated[int, Field(gt=-2**63, lt=2**63), Tag("int")],  # a 64-bit counter at most
    Annotated[float, Field(allow_inf_nan=False), Tag("float")], Annotated[str, Field(max_length=256), Tag("str")],
], Discriminator(lambda value: type(value).__name__)]
MetricLine = dict[MetricName, MetricValue]  # a metric line as the report and the live progress read it
_NAME, _VALUE = TypeAdapter(MetricName), TypeAdapter(MetricValue)


def _valid(adapter: TypeAdapter, value) -> bool:
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError:
        return False
    return True


def metric_line(data: bytes | str | dict) -> MetricLine | None:
    """One metric line (JSON text, or an already decoded value) as {name: finite scalar}, its first
    MAX_METRIC_KEYS entries; None where it is not a JSON object (not JSON, nested too deep, a list...). Names
    and values that are not a MetricName and a MetricValue are dropped."""
    if not isinstance(data, dict):
        try:
            data = load_json(data, "a metric line")
        except RecordError:
            return None
        if not isinstance(data, dict):
            return None
    return {key: value for key, value in list(data.items())[:MAX_METRIC_KEYS]
            if _valid(_NAME, key) and _valid(_VALUE, value)}


def metric_lines(data: bytes) -> list[dict]:
    """Every readable metric line of a metrics.jsonl, in order (unreadable lines skipped)."""
    return [line for line in map(metric_line, data.splitlines()) if line is not None]
