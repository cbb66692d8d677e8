"""Campaign specs (what to run): a YAML file, validated, expanded into runs.

    campaign: my-sweep
    repo: https://github.com/you/project.git   # your repository (a local path or file:// URL with --local)
    ref: main                            # resolved to its commit at launch: a new commit is measured as new runs
    script: train.py                     # a path in the repo; run as `python train.py --key=value ...`
    # workload: cartpole_pg              # or one of trainfleet's bundled workloads (then script is optional)
    # workdir: src                       # or, instead of script: shell commands run in a repo directory,
    # setup: pip install -r requirements.txt   #   with each hyperparameter as an environment variable
    # run: python main.py --batch_size "$batch_size" --save "$TRAINFLEET_OUTPUT_DIR/model.pt"
    # benchmark: {max_minutes: 2, total_steps: 100000}  # train a slice, predict the whole job's time and cost
    region: us-east-1
    market: spot                         # spot | on-demand
    max_runtime_minutes: 30              # watchdog per run: also the worst-case billing bound
    estimated_minutes: 5                 # optional: your expectation, for the likely estimate
    budget_usd: 10                       # refuse to launch if the worst case exceeds it
    target: {metric: val_accuracy, value: 0.9}   # optional: time-to-accuracy target (a workload's: one it emits)
    metric_definitions:                  # optional: metrics from plain-text output (JSON lines always count)
      - {name: loss, regex: 'loss ([0-9.]+)'}
    metrics_grace_minutes: 5             # an attempt that prints no metric this long is stopped as `no metrics`
    max_attempts: 3                      # launches per run (spot interruptions are relaunched)
    repeats: 1                           # runs per configuration (ids end -r2, -r3, ...); the report shows the spread
    vary_seed: false                     # repeats pass seed = seed + repeat - 1 (default: the same seed each time)
    # nodes: 2                           # backend sagemaker: instances per job, torchrun across them (1-16)
    fallback: {market: on-demand}        # optional: how to relaunch after an interruption
    hyperparameters: {epochs: 60}        # fixed for every run
    matrix:                              # cartesian product -> one run each
      instance_type: [c5.xlarge, g4dn.xlarge]
      batch_size: [64, 256]

Every key's type, bounds and meaning are the models of campaigns/spec_models.py, published as a JSON Schema
(`trainfleet campaign schema`); parse_campaign checks the rest (catalog, repository, workload) and asks its
caller for the backend's part: campaigns/ knows no backend. instance_benchmarks/campaign_file.py's
parse_spec/load_spec are the parse with the backend registry's checks (a backend's name, capabilities, prices,
section, run prefix).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import itertools
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from instance_benchmarks.campaigns.spec_models import (  # noqa: F401 (WORKLOADS re-exported)
    DISTRIBUTED_WORKLOADS, METRICS_GRACE_MINUTES, WORKLOADS, CampaignFile, describe, schema_text, validate_file, where,
)
from instance_benchmarks.catalog import Catalog, load_catalog
from instance_benchmarks.core.contract import (  # noqa: F401 (MARKETS, override_args re-exported)
    DEFAULT_BACKEND, HYPERPARAMETER_NAME, MARKETS, PROXY_VARIABLE, hyperparameter_text, override_args,
)
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.core.validation import redact, validate_local_repo, validate_repo_url
from instance_benchmarks.measure.metrics import MetricDefinitionError, parse_definitions
from training_scripts.config import ConfigError, parse_overrides

WORKLOAD_REQUIREMENTS = "training_scripts/requirements.txt"  # in the repository, for `workload:` campaigns
# Options the agent sets itself; a bundled workload may not override them.
RESERVED = {"output", "checkpoint", "dry_run"}
_TEXT = re.compile(r"^[^\x00-\x1f\x7f]*$")        # printable: no newline, tab or other control character


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    instance_type: str
    hyperparameters: dict
    repeat: int = 1  # 1..repeats: the same configuration run again (ids of repeats 2.. end in -r<n>)

    @property
    def label(self) -> str:
        varied = " ".join(f"{k}={v}" for k, v in self.hyperparameters.items())
        again = f" (repeat {self.repeat})" if self.repeat > 1 else ""
        return f"{self.instance_type} {varied}".strip() + again


@dataclass(frozen=True)
class CampaignSpec:
    campaign: str
    repo: str
    ref: str
    script: str
    region: str
    market: str
    max_runtime_minutes: int
    budget_usd: float
    matrix: dict
    run_prefix: str               # the backend's prefix of run ids ("" for the first backend): set by the parse
    workload: str | None = None
    hyperparameters: dict = field(default_factory=dict)
    estimated_minutes: float | None = None
    target: dict | None = None
    backend: str = DEFAULT_BACKEND
    max_attempts: int = 3
    fallback: dict | None = None  # after a spot interruption: {instance_type: ..., market: on-demand}
    backend_settings: dict | None = None  # the backend's own section, e.g. sagemaker: {role_arn, ...}
    metric_definitions: tuple = ()
    workdir: str | None = None    # directory in the repo the script / commands run in
    setup: str | None = None      # shell commands before training (billed as setup)
    run: str | None = None        # shell commands that train (instead of script)
    benchmark: dict | None = None  # train a slice only and predict the whole job
    repeats: int = 1               # runs per configuration
    vary_seed: bool = False        # repeat n runs with seed = seed + n - 1
    nodes: int = 1                 # instances per run (backend sagemaker; torchrun across them)
    metrics_grace_minutes: float = METRICS_GRACE_MINUTES  # no metric line by then: the attempt ends `no metrics`
    commit: str | None = None      # what `ref` resolved to at launch (campaigns.code.resolved); part of run ids

    def code(self) -> dict:
        """Everything of the code that decides what a run runs (hyperparameters aside): part of its run id."""
        return {"repo": self.repo, "commit": self.commit, "workdir": self.workdir, "script": self.script,
                "setup": self.setup, "run": self.run}

    def runs(self) -> list[RunSpec]:
        prefix = self.run_prefix
        keys = list(self.matrix)
        runs = []
        for combo in itertools.product(*(self.matrix[k] for k in keys)):
            values = dict(zip(keys, combo))
            instance_type = values.pop("instance_type")
            hyper = {**self.hyperparameters, **values}
            # the first backend (no prefix) keeps the hashes campaigns had before backends were named
            key = [self.backend, instance_type, hyper] if prefix else [instance_type, hyper]
            key += [{"nodes": self.nodes}] if self.nodes > 1 else []  # one node keeps the ids it always had
            key += [{"code": self.code()}] if self.commit else []  # other code, other runs (unbound: as before)
            digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
            for repeat in range(1, self.repeats + 1):
                run_id = readable_run_id(prefix, instance_type, values, digest, repeat)
                seeded = {**hyper, "seed": hyper.get("seed", 0) + repeat - 1} if self.vary_seed else hyper
                runs.append(RunSpec(run_id, instance_type, seeded, repeat))
        return runs

    def task_dict(self, run: RunSpec) -> dict:
        """What the instance agent runs for `run` (see agent.main): the script with `--key=value`
        arguments, or the `run` commands; hyperparameters are environment variables as well."""
        # a bundled workload installs its own requirements, not the trainfleet repository's (CDK, moto, ...)
        requirements = WORKLOAD_REQUIREMENTS if self.workload and not self.setup else None
        return {"repo": self.repo, "ref": self.ref, "commit": self.commit, "workdir": self.workdir, "setup": self.setup,
                "requirements": requirements,
                "script": None if self.run else self.script, "run": self.run,
                "args": [] if self.run else override_args(run.hyperparameters),
                "env": hyperparameter_text(run.hyperparameters),
                "metric_definitions": [dict(d) for d in self.metric_definitions], "benchmark": self.benchmark,
                "metrics_grace_seconds": self.metrics_grace_minutes * 60 if self.expects_metrics else None,
                "distributed": bool(self.workload in DISTRIBUTED_WORKLOADS and not self.run)}

    @property
    def expects_metrics(self) -> bool:
        """Whether a run must print metric lines: the campaign names metrics (definitions, a target, a
        benchmark slice that counts steps) or runs a bundled workload (which always prints them)."""
        return bool(self.metric_definitions or self.target or self.benchmark or self.workload)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _abbreviation(name: str) -> str:
    """batch_size -> bs, learning_rate -> lr, lr -> lr, epochs -> epoc: short, lowercase, [a-z0-9]."""
    parts = [p for p in name.lower().split("_") if p]
    text = "".join(p[0] for p in parts) if len(parts) > 1 else (parts[0][:4] if parts else "")
    return re.sub(r"[^a-z0-9]", "", text)


def _short_value(value) -> str:
    """128 -> 128, 0.001 -> 0p001, -1 -> m1, True -> t, [32, 16] -> 32x16, text -> its first 8 letters/digits."""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, list):
        return "x".join(_short_value(v) for v in value)[:12]
    text = str(value).lower().replace("-", "m").replace(".", "p").replace("+", "")
    return re.sub(r"[^a-z0-9]", "", text)[:8]


def readable_run_id(prefix: str, instance_type: str, varied: dict, digest: str, repeat: int = 1) -> str:
    """`c5-xlarge-bs128-8e42cf7e`: the instance type, each matrix hyperparameter abbreviated (name and
    value), the configuration's hash (which alone keeps ids unique), and `-r<n>` for repeats 2 and up.
    Only [a-z0-9-] and at most 63 characters (a valid S3 key part, tag value and SageMaker job name);
    the readable middle is shortened first. With only instance types in the matrix: `c5-xlarge-8e42cf7e`."""
    head = f"{prefix}{instance_type.replace('.', '-')}"
    tail = f"{digest}" + (f"-r{repeat}" if repeat > 1 else "")
    middle = "-".join(f"{_abbreviation(k)}{_short_value(v)}" for k, v in varied.items())
    room = 63 - len(head) - len(tail) - 2
    middle = middle[:max(room, 0)].strip("-")
    return "-".join(part for part in (head, middle, tail) if part)


def _workload_config(workload: str):
    return importlib.import_module(f"training_scripts.{workload}").Config


def _workload_metrics(workload: str) -> tuple[str, ...]:
    """The metrics a bundled workload's metric lines carry (its METRICS), the only ones a target can reach."""
    return importlib.import_module(f"training_scripts.{workload}").METRICS


def _check_value(name: str, value, where: str) -> None:
    """A hyperparameter of a foreign script: a finite number, a boolean, printable text, or a list of those."""
    for item in (value if isinstance(value, list) else [value]):
        if isinstance(item, float) and not math.isfinite(item):
            raise TrainfleetInputError(f"{where}: {name}={item!r} must be a finite number")
        if isinstance(item, str) and not _TEXT.fullmatch(item):
            raise TrainfleetInputError(f"{where}: {name}={item!r} contains a control character (newline, tab, ...)")
        if not isinstance(item, (bool, int, float, str)):
            raise TrainfleetInputError(f"{where}: {name} must be a number, true/false, text or a list of those")


def _check_hyperparameter(workload: str | None, name, value, where: str) -> None:
    if not isinstance(name, str) or not HYPERPARAMETER_NAME.fullmatch(name):
        raise TrainfleetInputError(f"{where}: hyperparameter name {str(name)[:64]!r} must be lowercase letters, "
                                   "digits and _, starting with a letter (it becomes an environment variable)")
    if PROXY_VARIABLE.fullmatch(name):
        raise TrainfleetInputError(f"{where}: hyperparameter name {name!r} is a proxy variable that programs on "
                                   "the instance read; choose another")
    _check_value(name, value, where)
    if workload is None:
        return
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


def _repo(value: str, base_dir: Path | None) -> str:
    """An https URL as given; a local repository (path or file:// URL) as file:///absolute/path."""
    if value.startswith("https://") or "@" in value.split("/")[0] or value.startswith("ssh://"):
        return validate_repo_url(value)
    path = Path(value[len("file://"):] if value.startswith("file://") else value).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    path = path.resolve()
    if not (path / ".git").exists():
        raise TrainfleetInputError(f"repo {redact(value)!r} is neither an https:// URL nor a local git repository")
    return validate_local_repo(f"file://{path}")


@dataclass(frozen=True)
class Located:
    """Where a campaign file's problems are: its name and each key path's line (yamlfile.load_yaml_lines)."""
    source: str
    lines: dict | None

    def where(self, path: tuple) -> str:
        return where(self.source, self.lines, path)

    def checked(self, path: tuple, check, *args):
        """`check(*args)`, its input error prefixed with the file and line of `path`."""
        try:
            return check(*args)
        except TrainfleetInputError as error:
            raise TrainfleetInputError(f"{self.where(path)}: {error}") from None


# The backend's part of a parse, given by the caller (instance_benchmarks/campaign_file.py asks the registry):
# (the validated file, the document, the catalog, the region, where) -> (run prefix, the backend's settings).
BackendCheck = typing.Callable[[CampaignFile, dict, Catalog, str, Located], tuple[str, dict | None]]


def parse_campaign(data, backend_check: BackendCheck, catalog: Catalog | None = None, source: str = "campaign",
                   base_dir: Path | None = None, lines: dict | None = None) -> CampaignSpec:
    """Validate a loaded YAML document (`lines`: each key path's line, from yamlfile.load_yaml_lines); every
    problem is one TrainfleetInputError line naming the file, the line where known, and the field. The models
    (campaigns/spec_models.py) check the file's shape; what follows needs the catalog, the repository, a bundled
    workload's own hyperparameters or the backend (`backend_check`, after the region, before the
    hyperparameters)."""
    catalog = catalog or load_catalog()
    if not isinstance(data, dict):
        raise TrainfleetInputError(f"{source}: expected a mapping of campaign settings at the top level")
    data = {key: value for key, value in data.items() if value is not None}  # `key:` left empty = not given
    try:
        model = validate_file(data)
    except ValidationError as error:
        raise TrainfleetInputError(describe(error, source, lines)) from None

    at = Located(source, lines)
    checked = at.checked
    workload, hyper = model.workload, data.get("hyperparameters") or {}
    repo = checked(("repo",), _repo, model.repo, base_dir)
    region = checked(("region",), catalog.require_region, model.region)
    run_prefix, settings = backend_check(model, data, catalog, region, at)
    for path, name, value in _hyperparameters(data):
        label = f"matrix.{name}" if path[0] == "matrix" else "hyperparameters"
        checked(path, _check_hyperparameter, workload, name, value, label)
    if model.vary_seed:
        checked(("vary_seed",), _check_hyperparameter, workload, "seed", hyper.get("seed", 0) + model.repeats - 1,
                "vary_seed")
    target = data.get("target")
    if target is not None and workload is not None and target["metric"] not in _workload_metrics(workload):
        raise TrainfleetInputError(f"{at.where(('target', 'metric'))}: target.metric {target['metric']!r}: "
                                   f"{workload} emits {', '.join(_workload_metrics(workload))}")
    definitions = checked(("metric_definitions",), _metric_definitions, data.get("metric_definitions"))
    return CampaignSpec(campaign=model.campaign, workload=workload, repo=repo, ref=model.ref, region=region,
                        script="" if model.run else model.script or f"training_scripts/{workload}.py",
                        market=model.market, max_runtime_minutes=model.max_runtime_minutes,
                        budget_usd=model.budget_usd, matrix={str(k): list(v) for k, v in data["matrix"].items()},
                        run_prefix=run_prefix,
                        hyperparameters=dict(hyper), estimated_minutes=data.get("estimated_minutes"), target=target,
                        backend=model.backend, max_attempts=model.max_attempts, fallback=data.get("fallback"),
                        backend_settings=settings, metric_definitions=definitions, workdir=model.workdir,
                        setup=model.setup, run=model.run,
                        benchmark=model.benchmark.model_dump(exclude_none=True) if model.benchmark else None,
                        repeats=model.repeats, vary_seed=model.vary_seed, nodes=model.nodes,
                        metrics_grace_minutes=model.metrics_grace_minutes)


def instance_types(data: dict):
    """(path, instance type) of every instance type the campaign names: the matrix's and the fallback's."""
    yield from ((("matrix", "instance_type", i), name) for i, name in enumerate(data["matrix"]["instance_type"]))
    if "instance_type" in (data.get("fallback") or {}):
        yield ("fallback", "instance_type"), data["fallback"]["instance_type"]


def _hyperparameters(data: dict):
    """(path, name, value) of every hyperparameter value: the fixed ones and each matrix entry."""
    yield from ((("hyperparameters", name), name, value) for name, value in (data.get("hyperparameters") or {}).items())
    for name, values in data["matrix"].items():
        if name != "instance_type":
            yield from ((("matrix", name, i), name, value) for i, value in enumerate(values))


def _metric_definitions(raw) -> tuple:
    if raw is None:
        return ()
    try:
        return tuple({"name": d.name, "regex": d.regex} for d in parse_definitions(raw))
    except MetricDefinitionError as error:
        raise TrainfleetInputError(str(error)) from None


def schema_command(out: Path | None = None) -> str:
    """`trainfleet campaign schema`: the campaign file's JSON Schema, written to `out` or returned for stdout."""
    text = schema_text()
    if out is not None:
        try:
            out.write_text(text)
        except OSError as error:
            raise TrainfleetInputError(f"{out}: cannot write the schema ({error.strerror})") from None
    return text
