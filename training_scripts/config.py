"""Frozen training configs and type-checked `--key=value` overrides (nanoGPT's configurator, typed)."""
from __future__ import annotations

import dataclasses
import typing


class ConfigError(ValueError):
    """A bad override or input; scripts print it on one line and exit with status 2."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters every workload shares. Workloads subclass it and restate their own defaults."""

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
    config = config_cls(**overrides)
    validate(config)
    return config


def validate(config) -> None:
    positive = ("epochs", "batch_size", "checkpoint_every", "log_every")
    for name in positive:
        if getattr(config, name) <= 0:
            raise ConfigError(f"--{name} must be positive, got {getattr(config, name)}")
    for name in ("patience", "max_steps", "weight_decay"):
        if getattr(config, name) < 0:
            raise ConfigError(f"--{name} must not be negative, got {getattr(config, name)}")
    if not config.learning_rate > 0:
        raise ConfigError(f"--learning_rate must be positive, got {config.learning_rate}")
    if not 0.0 <= config.dropout < 1.0:
        raise ConfigError(f"--dropout must be in [0, 1), got {config.dropout}")
    choices = {"amp_dtype": ("auto", "bf16", "fp16"), "data_placement": ("auto", "device", "host")}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise ConfigError(f"--{name} must be one of {', '.join(allowed)}, got {getattr(config, name)!r}")
    if any(width <= 0 for width in config.hidden_layers):
        raise ConfigError(f"--hidden_layers must be positive widths, got {config.hidden_layers}")
