"""Campaign specs (what to run): a YAML file, validated, expanded into runs, priced before launch.

    campaign: cartpole-batch-sweep
    workload: cartpole_pg                # a module in training_scripts/
    repo: https://github.com/you/trainfleet.git
    ref: main
    script: training_scripts/cartpole_pg.py   # default: training_scripts/<workload>.py
    region: us-east-1
    market: spot                         # spot | on-demand
    max_runtime_minutes: 30              # watchdog per run: also the worst-case billing bound
    estimated_minutes: 5                 # optional: your expectation, for the likely estimate
    budget_usd: 10                       # refuse to launch if the worst case exceeds it
    target: {metric: final10_reward, value: 195}   # optional: time-to-accuracy target
    max_attempts: 3                      # launches per run (spot interruptions are relaunched)
    fallback: {market: on-demand}        # optional: how to relaunch after an interruption
    hyperparameters: {epochs: 60}        # fixed for every run
    matrix:                              # cartesian product -> one run each
      instance_type: [c5.xlarge]
      batch_size: [3, 5, 7, 10, 12, 15]
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import itertools
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from instance_benchmarks.catalog import Catalog, load_catalog
from instance_benchmarks.errors import TrainfleetInputError
from instance_benchmarks.pricing import PriceQuote, cost_usd
from instance_benchmarks.validation import (
    validate_git_ref, validate_identifier, validate_positive, validate_repo_url, validate_script_path,
)

WORKLOADS = ("tabular_mlp", "cnn_digits", "lstm_regressor", "cartpole_pg")
MARKETS = ("spot", "on-demand")
BACKENDS = ("ec2", "sagemaker")
# Options the agent sets itself; a campaign may not override them.
RESERVED = {"output", "checkpoint", "dry_run"}
KNOWN_KEYS = {"campaign", "workload", "repo", "ref", "script", "region", "market", "max_runtime_minutes",
              "estimated_minutes", "budget_usd", "target", "hyperparameters", "matrix", "backend", "max_attempts",
              "fallback", "sagemaker"}


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    instance_type: str
    hyperparameters: dict

    @property
    def label(self) -> str:
        varied = " ".join(f"{k}={v}" for k, v in self.hyperparameters.items())
        return f"{self.instance_type} {varied}".strip()


@dataclass(frozen=True)
class CampaignSpec:
    campaign: str
    workload: str
    repo: str
    ref: str
    script: str
    region: str
    market: str
    max_runtime_minutes: int
    budget_usd: float
    matrix: dict
    hyperparameters: dict = field(default_factory=dict)
    estimated_minutes: float | None = None
    target: dict | None = None
    backend: str = "ec2"
    max_attempts: int = 3
    fallback: dict | None = None  # after a spot interruption: {instance_type: ..., market: on-demand}
    sagemaker: dict | None = None  # backend: sagemaker -> {role_arn, image_uri, max_wait_minutes}

    def runs(self) -> list[RunSpec]:
        keys = list(self.matrix)
        runs = []
        for combo in itertools.product(*(self.matrix[k] for k in keys)):
            values = dict(zip(keys, combo))
            instance_type = values.pop("instance_type")
            hyper = {**self.hyperparameters, **values}
            key = [instance_type, hyper] if self.backend == "ec2" else [self.backend, instance_type, hyper]
            digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
            prefix = "" if self.backend == "ec2" else "sm-"
            runs.append(RunSpec(f"{prefix}{instance_type.replace('.', '-')}-{digest}", instance_type, hyper))
        return runs

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _workload_config(workload: str):
    return importlib.import_module(f"training_scripts.{workload}").Config


def _check_hyperparameter(workload: str, name: str, value, where: str) -> None:
    from training_scripts.config import ConfigError, parse_overrides

    config_cls = _workload_config(workload)
    hints = typing.get_type_hints(config_cls)
    if name in RESERVED:
        raise TrainfleetInputError(f"{where}: {name} is set by trainfleet and cannot be overridden")
    if name not in hints:
        raise TrainfleetInputError(f"{where}: {workload} has no hyperparameter {name!r}")
    text = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) and hints[name] is not str else str(value)
    if isinstance(value, bool) != (hints[name] is bool) and hints[name] in (int, float, bool):
        raise TrainfleetInputError(f"{where}: {name}={value!r} must be {hints[name].__name__}")
    try:
        parse_overrides(config_cls, [f"--{name}={text}"])
    except ConfigError as error:
        raise TrainfleetInputError(f"{where}: {error}") from None


def parse_spec(data, catalog: Catalog | None = None, source: str = "campaign") -> CampaignSpec:
    """Validate a loaded YAML document; every problem is one TrainfleetInputError line."""
    catalog = catalog or load_catalog()
    if not isinstance(data, dict):
        raise TrainfleetInputError(f"{source}: expected a mapping of campaign settings at the top level")
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise TrainfleetInputError(f"{source}: unknown keys {', '.join(map(str, unknown))}")
    for key in ("campaign", "workload", "repo", "ref", "region", "max_runtime_minutes", "budget_usd", "matrix"):
        if key not in data:
            raise TrainfleetInputError(f"{source}: missing required key {key!r}")
    for key in ("campaign", "workload", "repo", "ref", "script", "region", "market", "backend"):
        if key in data and not isinstance(data[key], str):
            raise TrainfleetInputError(f"{source}: {key} must be a string, got {type(data[key]).__name__}")
    campaign = validate_identifier(data["campaign"], f"{source}: campaign")
    workload = data["workload"]
    if workload not in WORKLOADS:
        raise TrainfleetInputError(f"{source}: workload {workload!r} is not one of {', '.join(WORKLOADS)}")
    repo = validate_repo_url(data["repo"])
    ref = validate_git_ref(str(data["ref"]))
    script = validate_script_path(data.get("script", f"training_scripts/{workload}.py"))
    region = catalog.require_region(data["region"])
    market = data.get("market", "spot")
    if market not in MARKETS:
        raise TrainfleetInputError(f"{source}: market {market!r} must be spot or on-demand")
    backend = data.get("backend", "ec2")
    if backend not in BACKENDS:
        raise TrainfleetInputError(f"{source}: backend {backend!r} is not supported (use: {', '.join(BACKENDS)})")
    max_runtime = validate_positive(data["max_runtime_minutes"], f"{source}: max_runtime_minutes")
    if max_runtime > 7 * 24 * 60:
        raise TrainfleetInputError(f"{source}: max_runtime_minutes {max_runtime} is over a week")
    budget = validate_positive(data["budget_usd"], f"{source}: budget_usd", integer=False)
    estimated = data.get("estimated_minutes")
    if estimated is not None:
        validate_positive(estimated, f"{source}: estimated_minutes", integer=False)
        if estimated > max_runtime:
            raise TrainfleetInputError(f"{source}: estimated_minutes {estimated} exceeds max_runtime_minutes {max_runtime}")
    max_attempts = validate_positive(data.get("max_attempts", 3), f"{source}: max_attempts")
    fallback = data.get("fallback")
    if fallback is not None:
        if not isinstance(fallback, dict) or not fallback or set(fallback) - {"instance_type", "market"}:
            raise TrainfleetInputError(f"{source}: fallback must be {{instance_type: TYPE, market: spot|on-demand}}")
        if "instance_type" in fallback:
            catalog.get(str(fallback["instance_type"])).on_demand_price(region)
        if fallback.get("market", market) not in MARKETS:
            raise TrainfleetInputError(f"{source}: fallback market {fallback['market']!r} must be spot or on-demand")

    sagemaker = _sagemaker_settings(data, backend, max_runtime, source)
    hyper = data.get("hyperparameters") or {}
    if not isinstance(hyper, dict):
        raise TrainfleetInputError(f"{source}: hyperparameters must be a mapping")
    for name, value in hyper.items():
        _check_hyperparameter(workload, str(name), value, f"{source}: hyperparameters")

    matrix = data["matrix"]
    if not isinstance(matrix, dict) or "instance_type" not in matrix:
        raise TrainfleetInputError(f"{source}: matrix must be a mapping with an instance_type list")
    clean_matrix: dict = {}
    for name, values in matrix.items():
        if not isinstance(values, list) or not values:
            raise TrainfleetInputError(f"{source}: matrix.{name} must be a non-empty list")
        if len(set(map(repr, values))) != len(values):
            raise TrainfleetInputError(f"{source}: matrix.{name} lists a value twice")
        if name == "instance_type":
            for itype in values:
                instance = catalog.get(str(itype))
                instance.on_demand_price(region) if backend == "ec2" else instance.sagemaker_price(region)
        else:
            if name in hyper:
                raise TrainfleetInputError(f"{source}: {name} is both fixed and in the matrix")
            for value in values:
                _check_hyperparameter(workload, str(name), value, f"{source}: matrix.{name}")
        clean_matrix[str(name)] = list(values)
    runs = 1
    for values in clean_matrix.values():
        runs *= len(values)
    if runs > 500:
        raise TrainfleetInputError(f"{source}: the matrix expands to {runs} runs (at most 500)")

    target = data.get("target")
    if target is not None:
        if not isinstance(target, dict) or set(target) != {"metric", "value"} or isinstance(target["value"], bool) \
                or not isinstance(target["value"], (int, float)):
            raise TrainfleetInputError(f"{source}: target must be {{metric: NAME, value: NUMBER}}")
    return CampaignSpec(campaign=campaign, workload=workload, repo=repo, ref=ref, script=script, region=region,
                        market=market, max_runtime_minutes=max_runtime, budget_usd=float(budget),
                        matrix=clean_matrix, hyperparameters=dict(hyper), estimated_minutes=estimated,
                        target=target, backend=backend, max_attempts=max_attempts, fallback=fallback,
                        sagemaker=sagemaker)


DEFAULT_SAGEMAKER_IMAGE = "763104351884.dkr.ecr.{region}.amazonaws.com/pytorch-training:2.5-cpu-py311"


def _sagemaker_settings(data: dict, backend: str, max_runtime: int, source: str) -> dict | None:
    settings = data.get("sagemaker")
    if backend != "sagemaker":
        if settings is not None:
            raise TrainfleetInputError(f"{source}: a sagemaker section needs backend: sagemaker")
        return None
    settings = settings or {}
    if not isinstance(settings, dict) or set(settings) - {"role_arn", "image_uri", "max_wait_minutes"}:
        raise TrainfleetInputError(f"{source}: sagemaker must be {{role_arn, image_uri, max_wait_minutes}}")
    role = settings.get("role_arn")
    if role is not None and (not isinstance(role, str) or not role.startswith("arn:aws") or ":role/" not in role):
        raise TrainfleetInputError(f"{source}: sagemaker.role_arn {role!r} is not an IAM role ARN")
    image = settings.get("image_uri", DEFAULT_SAGEMAKER_IMAGE.format(region=data["region"]))
    if not isinstance(image, str) or not image or any(c.isspace() for c in image):
        raise TrainfleetInputError(f"{source}: sagemaker.image_uri must be an image URI")
    wait = validate_positive(settings.get("max_wait_minutes", 2 * max_runtime), f"{source}: sagemaker.max_wait_minutes")
    if wait < max_runtime:
        raise TrainfleetInputError(f"{source}: sagemaker.max_wait_minutes {wait} must be >= max_runtime_minutes {max_runtime}")
    return {"role_arn": role, "image_uri": image, "max_wait_minutes": wait}


def load_spec(path: str | Path, catalog: Catalog | None = None) -> CampaignSpec:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise TrainfleetInputError(f"{path}: cannot read campaign file ({error.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise TrainfleetInputError(f"{path}: not valid YAML{where}") from None
    return parse_spec(data, catalog, source=str(path))


@dataclass(frozen=True)
class Estimate:
    runs: int
    worst_case_usd: float
    expected_usd: float | None
    per_run: dict  # run_id -> (usd_per_hour, worst_case_usd)

    def within(self, budget: float) -> bool:
        return self.worst_case_usd <= budget


def estimate(spec: CampaignSpec, quotes: dict[str, PriceQuote]) -> Estimate:
    """Worst case = every run hits its watchdog at the quoted price; expected uses estimated_minutes."""
    per_run, worst, expected = {}, 0.0, 0.0
    for run in spec.runs():
        price = quotes[run.instance_type].usd_per_hour
        run_worst = cost_usd(spec.max_runtime_minutes * 60, price)
        per_run[run.run_id] = (price, run_worst)
        worst += run_worst
        if spec.estimated_minutes is not None:
            expected += cost_usd(spec.estimated_minutes * 60, price)
    return Estimate(len(per_run), worst, expected if spec.estimated_minutes is not None else None, per_run)


def hyperparameter_text(hyperparameters: dict) -> dict[str, str]:
    """Hyperparameters as the text a training script parses: lists become comma-separated tuples,
    booleans lowercase. Shared by EC2 (`--name=value`) and SageMaker (`--name value`)."""
    out = {}
    for name, value in hyperparameters.items():
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = str(value).lower()
        out[name] = str(value)
    return out


def override_args(hyperparameters: dict) -> list[str]:
    """`--name=value` arguments for a training script."""
    return [f"--{name}={value}" for name, value in hyperparameter_text(hyperparameters).items()]
