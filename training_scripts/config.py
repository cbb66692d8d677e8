"""Frozen training configs and type-checked `--key=value` overrides (nanoGPT's configurator, typed)."""
from __future__ import annotations

import dataclasses
import math
import re
import typing


class ConfigError(ValueError):
    """A bad override or input; scripts print it on one line and exit with status 2."""


def _number(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


@dataclasses.dataclass(frozen=True)
class Bound:
    """The values a field may take: a range (`low`/`high`, each end closed unless `*_open`), a set of
    `choices`, or a `pattern` (read as `describe` in errors). For a tuple field the range applies to
    each item (named `item` in errors) and `items` bounds how many there are."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    pattern: str | None = None
    describe: str = ""
    item: str = ""
    items: tuple[int, int] | None = None

    def range_text(self, integer: bool) -> str:
        """`positive and at most 100` (integers from 1, numbers above 0), else `in [0, 1)`."""
        if self.high is not None and not self.high_open and (
                (self.low == 0 and self.low_open) or (integer and self.low == 1 and not self.low_open)):
            return f"positive and at most {_number(self.high)}"
        return (f"in {'(' if self.low_open else '['}{_number(self.low)}, "
                f"{_number(self.high)}{')' if self.high_open else ']'}")

    def _fits(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def check(self, name: str, value) -> None:
        """Raise a one-line ConfigError naming the field and the bound when `value` is outside it."""
        if self.choices and value not in self.choices:
            raise ConfigError(f"--{name} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        if self.pattern and not (isinstance(value, str) and re.fullmatch(self.pattern, value)):
            raise ConfigError(f"--{name} must be {self.describe or self.pattern}, got {value!r}")
        if self.low is None and self.high is None:
            return
        if self.items is not None:
            fewest, most = self.items
            if not isinstance(value, (tuple, list)) or not fewest <= len(value) <= most:
                raise ConfigError(f"--{name} must have {fewest} to {most} {self.item or 'item'}s, got {value!r}")
            bad = [v for v in value if not self._fits(v)]
            if bad:
                integer = all(isinstance(v, int) for v in value)
                raise ConfigError(f"--{name}: each {self.item or 'item'} must be {self.range_text(integer)}, "
                                  f"got {tuple(value)}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"--{name} must be a number {self.range_text(False)}, got {value!r}")
        elif not self._fits(value):
            raise ConfigError(f"--{name} must be {self.range_text(isinstance(value, int))}, got {value!r}")


def between(low: float, high: float, *, low_open: bool = False, high_open: bool = False,
            item: str = "", items: tuple[int, int] | None = None) -> Bound:
    return Bound(low=low, high=high, low_open=low_open, high_open=high_open, item=item, items=items)


def one_of(*choices: str) -> Bound:
    return Bound(choices=choices)


STEPS = 10**9  # a bound for step counts and intervals: far beyond any run, small enough to catch a typo


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters every workload shares. Workloads subclass it and restate their own defaults.

    BOUNDS (a class attribute, not a field) holds each field's allowed values; every construction checks
    them (`__post_init__`), so the scripts' own `--key=value` parsing and a campaign's validation before
    launch (instance_benchmarks/campaigns/spec.py) refuse the same values. A workload adds its own fields'
    bounds and may narrow the shared ones: `BOUNDS = {**TrainConfig.BOUNDS, "gamma": between(0, 1, low_open=True)}`."""

    epochs: int = 10                 # passes over the training set (policy updates for RL)
    batch_size: int = 64             # samples per step, over all DDP ranks (episodes per update for RL)
    learning_rate: float = 1e-3      # AdamW step size
    weight_decay: float = 0.0        # AdamW decoupled weight decay
    dropout: float = 0.0             # dropout probability in hidden layers
    hidden_layers: tuple[int, ...] = (64,)  # hidden widths
    patience: int = 0                # early stopping: evaluations without improvement (0 = off)
    checkpoint_every: int = 50       # steps between checkpoints
    log_every: int = 10              # steps between metric lines
    seed: int = 0                    # seeds torch, numpy, python and the data order
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    amp: bool = False                # mixed precision: autocast (bf16 on Ampere and newer, else fp16 + GradScaler)
    amp_dtype: str = "auto"          # auto | bf16 | fp16 (auto: amp on GPU only; name one to autocast on CPU too)
    compile: bool = False            # torch.compile the model (GPU)
    channels_last: bool = False      # NHWC memory format for convolutions (tensor cores on GPU)
    data_placement: str = "auto"     # auto | device | host (host: pinned memory, non-blocking copies per batch)
    max_steps: int = 0               # stop after this many steps (0 = no limit)
    output: str = ""                 # local dir or s3://bucket/prefix ("" = $TRAINFLEET_OUTPUT_DIR, $SM_MODEL_DIR or runs/<workload>)
    checkpoint: str = ""             # local dir or s3:// URI for checkpoints ("" = <output>/checkpoints)
    data: str = ""                   # workload-specific input file ("" = offline default data)
    dry_run: bool = False            # tiny data, one short epoch: a CI smoke test

    BOUNDS = {
        "epochs": between(1, 100_000),
        "batch_size": between(1, 1 << 20),
        "learning_rate": between(0, 10, low_open=True),
        "weight_decay": between(0, 1),
        "dropout": between(0, 1, high_open=True),
        "hidden_layers": between(1, 65_536, item="width", items=(0, 64)),
        "patience": between(0, 100_000),
        "checkpoint_every": between(1, STEPS),
        "log_every": between(1, STEPS),
        "seed": between(0, 2**32 - 1),  # numpy's seed range
        "device": Bound(pattern=r"auto|cpu|cuda(:[0-9]{1,3})?", describe="auto, cpu, cuda or cuda:N"),
        "amp_dtype": one_of("auto", "bf16", "fp16"),
        "data_placement": one_of("auto", "device", "host"),
        "max_steps": between(0, STEPS),
    }

    def __post_init__(self) -> None:
        validate(self)


def _convert(name: str, text: str, kind):
    origin = typing.get_origin(kind)
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
        if origin is tuple:
            (item, _) = typing.get_args(kind)
            return tuple(_convert(name, part, item) for part in text.split(",") if part.strip())
    except ValueError:
        pass
    raise ConfigError(f"--{name}={text!r}: expected {getattr(kind, '__name__', str(kind))}")


def parse_overrides(config_cls, argv: list[str]):
    """`--key=value`, `--key value` and bare `--flag` (bools) over the dataclass defaults."""
    hints = typing.get_type_hints(config_cls)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}
    overrides: dict = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}: use --key=value")
        key, eq, value = arg[2:].partition("=")
        name = key.replace("-", "_")
        if name not in fields:
            close = ", ".join(sorted(fields))
            raise ConfigError(f"unknown option --{key} (known: {close})")
        if not eq:
            if fields[name] is bool and (not args or args[0].startswith("--")):
                value = "true"
            elif args:
                value = args.pop(0)
            else:
                raise ConfigError(f"--{key} needs a value")
        overrides[name] = _convert(key, value, fields[name])
    return config_cls(**overrides)  # checked against its BOUNDS as it is built


def validate(config) -> None:
    """Every field against the bound its class declares in BOUNDS (a workload's own entries narrow the shared ones)."""
    for item in dataclasses.fields(config):
        bound = type(config).BOUNDS.get(item.name)
        if bound is not None:
            bound.check(item.name, getattr(config, item.name))
