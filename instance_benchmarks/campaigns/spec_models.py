"""The campaign file as pydantic v2 models: every key, its type and its bounds in one place.

The models check everything the file alone decides: known keys only, types, finite numbers, stated bounds,
the allowed words, names and paths (core.validation), and the rules between keys (script or run, estimate
within the watchdog, matrix size, ...). `campaigns.spec.parse_spec` checks what needs more than the file: the
catalog, the repository, a bundled workload's own hyperparameters, the backend's capabilities. The JSON Schema an editor
reads (`trainfleet campaign schema`, `campaign.schema.json` beside this module) is generated from them, and a
validation error becomes one line naming the file, the YAML line and the field:

    campaign.yaml:12: matrix.instance_type must be a non-empty list
    campaign.yaml:3: unknown key 'budget' (did you mean budget_usd?)
"""
from __future__ import annotations

import json
import math
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from instance_benchmarks.core.contract import DEFAULT_BACKEND, DISTRIBUTED_WORKLOADS, MARKETS, WORKLOADS  # noqa: F401 (re-exported)
from instance_benchmarks.core.errors import TrainfleetInputError, did_you_mean
from instance_benchmarks.core.validation import (
    validate_directory, validate_git_ref, validate_identifier, validate_script_path, validate_snippet,
)

SCHEMA_FILE = Path(__file__).with_name("campaign.schema.json")
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

MAX_RUNTIME_MINUTES = 7 * 24 * 60  # a week
METRICS_GRACE_MINUTES = 5.0        # default: how long an attempt may run before its first metric line
MAX_REPEATS = 20
MAX_NODES = 16
MAX_RUNS = 500                     # configurations x repeats
METRIC_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

# A hyperparameter's value: validated further in campaigns.spec (names, control characters, the workload's own
# bounds); the schema states the shape an editor can check.
_SCALAR = {"type": ["boolean", "integer", "number", "string"]}
_VALUE_SCHEMA = {"anyOf": [_SCALAR, {"type": "array", "items": _SCALAR}]}
HyperValue = Annotated[Any, WithJsonSchema(_VALUE_SCHEMA)]


def refusal(message: str, *path) -> PydanticCustomError:
    """A validation error with `message` as it is (today's wording), at `path` when given (else where raised)."""
    return PydanticCustomError("spec", "{message}", {"message": message, "path": path})


def _checked(check, *args) -> AfterValidator:
    """A core.validation check as a field validator: its one-line message kept, its value returned."""
    def validate(value):
        try:
            return check(value, *args)
        except TrainfleetInputError as error:
            raise refusal(str(error)) from None
    return AfterValidator(validate)


class _Strict(BaseModel):
    """No unknown key, no coercion ("5" is not 5, true is not 1), no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class Target(_Strict):
    metric: str = Field(pattern=METRIC_NAME, description="The metric to reach: one the script prints (a bundled "
                        "workload's: one of its METRICS).")
    value: float = Field(description="The value that counts as reached (time-to-target and cost-to-target).")


class MetricDefinition(_Strict):
    name: str = Field(pattern=METRIC_NAME, description="The metric's name (not `t`, unique).")
    regex: str = Field(min_length=1, description="An RE2 regular expression with exactly one capturing group: the "
                       "value, matched against each plain-text output line.")


class Fallback(_Strict):
    instance_type: str | None = Field(None, description="The instance type to relaunch an interrupted run on.")
    market: Literal[MARKETS] | None = Field(None, description="The market to relaunch it in.")

    @model_validator(mode="after")
    def _not_empty(self) -> Fallback:
        if self.instance_type is None and self.market is None:
            raise refusal("fallback needs instance_type, market or both")
        return self


class Benchmark(_Strict):
    max_minutes: float | None = Field(None, gt=0, description="Train this many minutes of the job, then stop cleanly "
                                      "(below max_runtime_minutes).")
    max_steps: int | None = Field(None, ge=1, description="Or train this many steps.")
    total_steps: int | None = Field(None, ge=1, description="The whole job's length in steps (or total_samples).")
    total_samples: int | None = Field(None, ge=1, description="The whole job's length in samples (or total_steps).")
    warmup_steps: int | None = Field(None, ge=0, description="Steps excluded from the measured rate.")
    warmup_seconds: float | None = Field(None, ge=0, description="Seconds excluded from the measured rate.")

    @model_validator(mode="after")
    def _slice_and_job(self) -> Benchmark:
        if self.max_minutes is None and self.max_steps is None:
            raise refusal("benchmark needs max_minutes or max_steps (the slice to train)")
        if (self.total_steps is None) == (self.total_samples is None):
            raise refusal("benchmark needs the whole job's length: total_steps or total_samples (one of them)")
        return self


class SageMakerSection(_Strict):
    role_arn: str | None = Field(None, description="The execution role the jobs run as "
                                 "(arn:aws:iam::<account>:role/<name>); created for you on the embedded default.")
    image_uri: str | None = Field(None, description="The training image (default: the PyTorch "
                                  "training DLC for each run's instance type).")
    max_wait_minutes: int | None = Field(None, ge=1, description="How long a managed spot job may wait and run "
                                         "(>= max_runtime_minutes; default twice it).")


class Matrix(BaseModel):
    """`instance_type` and any hyperparameter, each a list: one run per combination."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False, frozen=True)
    instance_type: list[str] = Field(min_length=1, description="The instance types to run on (catalog names).")
    __pydantic_extra__: dict[str, Annotated[list[HyperValue], Field(min_length=1)]]


class CampaignFile(_Strict):
    """A campaign file: what to run (repository and script, or a bundled workload), where (region, instance
    types, market, backend), how often and within what budget."""

    model_config = ConfigDict(title="trainfleet campaign")

    campaign: Annotated[str, _checked(validate_identifier, "campaign")] = Field(
        description="The campaign's name: 1-63 lowercase letters, digits or '-' (S3 prefix, tags).")
    repo: str = Field(description="Your repository: an https:// URL, or (embedded default) a local path or file:// "
                      "URL, relative to the campaign file.")
    ref: Annotated[str, _checked(validate_git_ref)] = Field(
        description="Branch, tag or commit; resolved to its commit at launch (new commit, new runs).")
    script: Annotated[str, _checked(validate_script_path)] | None = Field(
        None, description="A .py or .sh path in the repo, run as `python SCRIPT --key=value ...` (default for a "
        "workload: training_scripts/<workload>.py).")
    workload: Literal[WORKLOADS] | None = Field(None, description="One of trainfleet's bundled workloads (then "
                                                "script is optional).")
    workdir: Annotated[str, _checked(validate_directory, "workdir")] | None = Field(
        None, description="The repo directory the script or commands run in.")
    setup: Annotated[str, _checked(validate_snippet, "setup")] | None = Field(
        None, description="Shell commands before training (billed as setup).")
    run: Annotated[str, _checked(validate_snippet, "run")] | None = Field(
        None, description="Shell commands that train, instead of script: each hyperparameter is an environment "
        "variable.")
    benchmark: Benchmark | None = Field(None, description="Train a slice only and predict the whole job's time and "
                                        "cost.")
    region: str = Field(description="AWS region (a catalog region).", examples=["us-east-1"])
    market: Literal[MARKETS] = Field("spot", description="spot or on-demand.")
    max_runtime_minutes: int = Field(ge=1, le=MAX_RUNTIME_MINUTES, description="Watchdog per run: also the "
                                     "worst-case billing bound.")
    estimated_minutes: float | None = Field(None, gt=0, description="Your expectation per run, for the likely "
                                            "estimate (at most max_runtime_minutes).")
    budget_usd: float = Field(gt=0, description="Refuse to launch if the worst case exceeds it (dollars).")
    target: Target | None = Field(None, description="A time-to-accuracy target: {metric: NAME, value: NUMBER}.")
    metric_definitions: list[MetricDefinition] | None = Field(None, description="Metrics read from plain-text output "
                                                              "(JSON metric lines always count).")
    metrics_grace_minutes: float = Field(METRICS_GRACE_MINUTES, gt=0, description="An attempt that prints no metric "
                                         "this long is stopped as `no metrics`.")
    max_attempts: int = Field(3, ge=1, description="Launches per run (spot interruptions are relaunched).")
    repeats: int = Field(1, ge=1, le=MAX_REPEATS, description="Runs per configuration (ids end -r2, -r3, ...).")
    vary_seed: bool = Field(False, description="Repeat n runs with seed = seed + n - 1 (default: the same seed).")
    nodes: int = Field(1, ge=1, le=MAX_NODES, description="Instances per run, torchrun across them (backend "
                       "sagemaker, a bundled workload).")
    backend: str = Field(DEFAULT_BACKEND, description="Where runs execute: a registered backend.", examples=["ec2", "sagemaker"])
    fallback: Fallback | None = Field(None, description="How to relaunch after a spot interruption (backend ec2).")
    ec2: None = Field(None, description="Backend ec2 takes no section of its own.")
    sagemaker: SageMakerSection | None = Field(None, description="Backend sagemaker's settings.")
    hyperparameters: dict[str, HyperValue] | None = Field(None, description="Fixed for every run: lowercase names, "
                                                          "each a number, true/false, text or a list of those.")
    matrix: Matrix = Field(description="Cartesian product of lists, one run per combination: instance_type and "
                           "hyperparameters.")

    @model_validator(mode="after")
    def _consistent(self) -> CampaignFile:
        """The rules between keys that need no catalog, repository or backend."""
        if self.run is not None and (self.script is not None or self.workload is not None):
            raise refusal("give either run (shell commands) or script / workload, not both", "run")
        if self.workload is None and self.script is None and self.run is None:
            raise refusal("give the script to run (a path in the repo), run commands, or a bundled workload")
        if self.estimated_minutes is not None and self.estimated_minutes > self.max_runtime_minutes:
            raise refusal(f"estimated_minutes {self.estimated_minutes:g} exceeds max_runtime_minutes "
                          f"{self.max_runtime_minutes}", "estimated_minutes")
        if self.benchmark and (self.benchmark.max_minutes or 0) >= self.max_runtime_minutes:
            raise refusal(f"benchmark.max_minutes must be below max_runtime_minutes {self.max_runtime_minutes}",
                          "benchmark", "max_minutes")
        if self.nodes > 1 and self.workload not in DISTRIBUTED_WORKLOADS:
            raise refusal(f"nodes: {self.nodes} runs a bundled workload under torchrun: one of "
                          f"{', '.join(DISTRIBUTED_WORKLOADS)}", "nodes")
        self._check_matrix()
        return self

    def _check_matrix(self) -> None:
        hyper = self.hyperparameters or {}
        matrix = {"instance_type": self.matrix.instance_type, **self.matrix.model_extra}
        for name, values in matrix.items():
            if len(set(map(repr, values))) != len(values):
                raise refusal(f"matrix.{name} lists a value twice", "matrix", name)
            if name in hyper:
                raise refusal(f"{name} is both fixed and in the matrix", "matrix", name)
        runs = math.prod(len(values) for values in matrix.values())
        if runs * self.repeats > MAX_RUNS:
            times = f" x {self.repeats} repeats" if self.repeats > 1 else ""
            raise refusal(f"the matrix expands to {runs} runs{times} (at most {MAX_RUNS})", "matrix")
        if self.vary_seed and "seed" in matrix:
            raise refusal("vary_seed sets seed per repeat; seed cannot be in the matrix too", "vary_seed")
        seed = hyper.get("seed", 0)
        if self.vary_seed and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise refusal(f"vary_seed needs a whole-number seed, got {seed!r}", "hyperparameters", "seed")


# ----------------------------------------------------------------------------------------------- schema
def campaign_schema() -> dict:
    """The JSON Schema of a campaign file (what `trainfleet campaign schema` prints)."""
    return {"$schema": SCHEMA_DIALECT, **CampaignFile.model_json_schema()}


def schema_text() -> str:
    return json.dumps(campaign_schema(), indent=2) + "\n"


# ----------------------------------------------------------------------------------------------- errors
def line_of(lines: dict | None, path: tuple) -> int | None:
    """The YAML line of `path` (keys and list indexes), or of its nearest enclosing value that has one."""
    if not lines:
        return None
    for end in range(len(path), -1, -1):
        line = lines.get(tuple(path[:end]))
        if line is not None:
            return line
    return None


def where(source: str, lines: dict | None, path: tuple = ()) -> str:
    """`campaign.yaml:12` where the line is known, else `campaign.yaml`."""
    line = line_of(lines, path)
    return f"{source}:{line}" if line else source


def dotted(path: tuple) -> str:
    """('matrix', 'instance_type', 1) -> matrix.instance_type[1]"""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _field_at(path: tuple):
    """(model class, field info) of the field at `path` in CampaignFile, or (model, None) for a key it lacks."""
    model, info = CampaignFile, None
    for part in path:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return model, None
        info = model.model_fields[part]
        model = _model_in(info.annotation)
    return model, info


def _model_in(annotation):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _number_phrase(info, integer: bool) -> str:
    bounds = {name: getattr(m, name.lower()) for m in info.metadata for name in ("Ge", "Gt", "Le")
              if hasattr(m, name.lower())}
    if integer and "Ge" in bounds and "Le" in bounds:
        return f"a whole number from {bounds['Ge']} to {bounds['Le']}"
    if integer:
        return f"a whole number >= {bounds['Ge']}" if "Ge" in bounds else "a whole number"
    if "Gt" in bounds:
        return f"a finite number > {bounds['Gt']:g}"
    return f"a finite number >= {bounds['Ge']:g}" if "Ge" in bounds else "a finite number"


def _words(values) -> str:
    values = [str(v) for v in values]
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


_NUMBER_ERRORS = {"int_type", "float_type", "finite_number", "greater_than", "greater_than_equal", "less_than",
                  "less_than_equal", "int_from_float"}
_KINDS = {"none_required": "empty", "bool_type": "true or false", "string_type": "text", "list_type": "a list",
          "dict_type": "a mapping",
          "model_type": "a mapping", "model_attributes_type": "a mapping"}


def _message(error: dict) -> str:
    """One pydantic error as a sentence naming its field (today's wording where there was one)."""
    path, kind, value = _path(error), error["type"], error.get("input")
    name, shown = dotted(path), repr(value)[:80]
    parent, last = path[:-1], path[-1] if path else None
    prefix = f"{dotted(parent)}: " if parent else ""
    if last == "[key]":
        return f"{dotted(path[:-2])}: key {path[-2]!r} must be text"
    if kind == "missing":
        return f"{prefix}missing required key {last!r}"
    if kind == "extra_forbidden":
        model, _ = _field_at(parent)
        known = list(model.model_fields) if model else []
        return f"{prefix}unknown key {str(last)[:80]!r}" + did_you_mean(str(last), known)
    _, info = _field_at(path)
    if kind in _NUMBER_ERRORS and info is not None:
        integer = typing.get_args(info.annotation)[:1] == (int,) or info.annotation is int
        return f"{name} must be {_number_phrase(info, integer)}, got {shown}"
    if kind == "literal_error":
        allowed = [a.strip("'") for a in error["ctx"]["expected"].replace(" or ", ", ").split(", ")]
        return f"{name} {shown} must be {_words(allowed)}" + did_you_mean(str(value), allowed)
    if kind == "too_short":
        return f"{name} must be a non-empty list"
    if kind == "string_too_short":
        return f"{name} must not be empty"
    if kind == "string_pattern_mismatch":
        return f"{name} {shown} must match {error['ctx']['pattern']}"
    if kind in _KINDS:
        return f"{name} must be {_KINDS[kind]}, got {shown}"
    if kind == "spec":
        return error["msg"]
    return f"{name}: {error['msg']}" if name else error["msg"]


def _path(error: dict) -> tuple:
    """Where an error is: the path a cross-field rule names, else pydantic's own location."""
    return tuple((error.get("ctx") or {}).get("path") or error["loc"])


def describe(error: ValidationError, source: str, lines: dict | None) -> str:
    """The first problem of a ValidationError as one line: `file:LINE: field message (and N more)`. An unknown
    key comes first: a misspelt key (with its "did you mean") explains the required one reported missing."""
    errors = error.errors(include_url=False)
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where(source, lines, _path(first))}: {_message(first)}{more}"


def validate_file(data: dict) -> CampaignFile:
    """The model of a loaded campaign file (raises ValidationError)."""
    return CampaignFile.model_validate(data)

