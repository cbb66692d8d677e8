"""Use a trained model: each bundled workload's `load_model(path)` returns a ready `nn.Module`.

    from training_scripts.tabular_mlp import load_model
    model = load_model("model/model.pt")  # or the folder holding it; eval mode, on the CPU
    print(model.predict([[60_000, 15_000, 700, 18, 5, 9, 0, 36]]))  # raw inputs -> ['B']

What a workload writes (training_scripts/loop.py `write_artifacts`): `model.pt` =
`{"model": state_dict, "config": the run's Config as a dict}` and, beside it, `preprocessing.json`
(`{"workload": ..., how inputs were transformed in training, class names}`). `load_model` rebuilds the
network with the workload's `build_model(config)`, loads the weights with `torch.load(weights_only=True)`
(a model file cannot run code) and puts the preprocessing in front of it:

    model(x)          raw inputs (lists, numpy or tensors) -> the network's outputs (logits; a regressor's
                      outputs in the original units)
    model.predict(x)  the same under `torch.no_grad()`, as plain Python: class names for classifiers
    model.preprocess  the input transform alone; model.network the bare trained network
    model.config      the run's Config (hyperparameters)

The returned model is an `nn.Sequential` (preprocess -> network [-> postprocess]), so `.to("cuda")`,
`torch.jit`/`torch.export` and `state_dict()` work as for any module.

A new workload follows the same convention: a module-level `build_model(config) -> nn.Module`, a
`preprocessing.json` artifact naming its workload, and a small `load_model(path)` built from the helpers here.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import re
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from training_scripts.config import ConfigError

MODEL_FILE = "model.pt"
PREPROCESSING_FILE = "preprocessing.json"


class AsTensor(nn.Module):
    """Lists, numpy arrays or tensors -> a float32 tensor on the model's device (no other change)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("anchor", torch.empty(0), persistent=False)  # follows .to(device)

    def forward(self, x) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float32, device=self.anchor.device)


class Standardize(nn.Module):
    """Raw inputs -> the network's inputs: optionally log1p, times `scale`, minus `mean`, over `std`
    (per feature or scalar), as the workload did to its training data."""

    def __init__(self, mean, std, *, scale: float = 1.0, log1p: bool = False) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.scale, self.log1p = float(scale), bool(log1p)

    def forward(self, x) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float32, device=self.mean.device)
        if self.log1p:
            x = torch.log1p(x)
        return (x * self.scale - self.mean) / self.std


class Unstandardize(nn.Module):
    """A regressor's standardized output back in the original units."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean


class AddDim(nn.Module):
    """Insert a size-1 dimension at `dim` when the input has `when_ndim` dimensions (e.g. N,H,W images ->
    N,1,H,W; N,W windows -> N,W,1), so callers may leave out a trivial channel or feature axis."""

    def __init__(self, dim: int, when_ndim: int) -> None:
        super().__init__()
        self.dim, self.when_ndim = dim, when_ndim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(self.dim) if x.dim() == self.when_ndim else x


class Predictor(nn.Sequential):
    """preprocess -> network [-> postprocess], in eval mode; `classes` names a classifier's outputs."""

    def __init__(self, stages: "OrderedDict[str, nn.Module]", *, config, classes: Sequence[str] | None = None) -> None:
        super().__init__(stages)
        self.config = config
        self.classes = list(classes) if classes else None
        self.eval()

    @torch.no_grad()
    def predict(self, x) -> list:
        """Predictions as plain Python: a class name per row for classifiers, else the outputs."""
        out = self(x)
        if self.classes:
            return [self.classes[i] for i in out.argmax(dim=-1).flatten().tolist()]
        return out.cpu().tolist()


def model_file(path) -> Path:
    """`path` itself, or `path/model.pt` when it is a folder; FileNotFoundError when absent."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file (a run's model.pt, or the folder holding it)")
    return path


def config_from_dict(config_cls, values: dict):
    """The workload's Config from a saved config dict (lists back to tuples; unknown keys ignored, so a
    model saved by a newer trainfleet with extra options still loads)."""
    names = {field.name for field in dataclasses.fields(config_cls)}
    known = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items() if key in names}
    return config_cls(**known)


def read_model(path, config_cls) -> tuple[object, dict, Path]:
    """(config, state_dict, folder) of a saved model.pt; loaded with weights_only=True, onto the CPU."""
    file = model_file(path)
    try:
        saved = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  a truncated file or a pickle that is not plain data
        raise ConfigError(f"{file}: not a trainfleet model file ({type(error).__name__}: {str(error)[:200]})") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict) or not isinstance(saved.get("config"), dict):
        raise ConfigError(f"{file}: expected {{'model': state_dict, 'config': dict}} (a trainfleet workload's model.pt)")
    return config_from_dict(config_cls, saved["config"]), saved["model"], file.parent


def read_preprocessing(folder: Path, workload: str, required: Sequence[str] = ()) -> dict:
    """preprocessing.json beside model.pt, checked to be `workload`'s and to hold the `required` keys."""
    file = Path(folder) / PREPROCESSING_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file}: missing; {workload}'s model needs it beside model.pt "
                                "(download the whole run folder with `trainfleet models download`)")
    try:
        data = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{file}: not JSON ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a JSON object")
    if data.get("workload", workload) != workload:
        raise ConfigError(f"{file} belongs to a {data['workload']!r} model, not {workload!r}: "
                          f"use training_scripts.{data['workload']}.load_model")
    missing = [key for key in required if key not in data]
    if missing:
        raise ConfigError(f"{file}: no {', '.join(missing)} (written by an older trainfleet? retrain or add them)")
    return data


def load_network(build_model: Callable[[object], nn.Module], config, state: dict) -> nn.Module:
    """The workload's network with the trained weights (strict: every tensor must match), in eval mode."""
    network = build_model(config)
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise ConfigError(f"the weights do not fit the network its config describes: {str(error).splitlines()[0]}") from None
    return network.eval()


def predictor(network: nn.Module, config, *, preprocess: nn.Module | None = None,
              postprocess: nn.Module | None = None, classes: Sequence[str] | None = None) -> Predictor:
    stages: OrderedDict[str, nn.Module] = OrderedDict(preprocess=preprocess or AsTensor(), network=network)
    if postprocess is not None:
        stages["postprocess"] = postprocess
    return Predictor(stages, config=config, classes=classes)


# What the 3-line snippet of `trainfleet models download` predicts on, per bundled workload.
EXAMPLES = {  # workload: (expression, comment)
    "tabular_mlp": ("model.predict([[60_000, 15_000, 700, 18, 5, 9, 0, 36]])", "a loan grade from raw SCHEMA columns"),
    "cnn_digits": ("model.predict([[[0.0] * 8] * 8])", "a digit per N,H,W image of raw pixel values"),
    "lstm_regressor": ("model.predict([[0.5] * model.config.window])", "the next value after a window of raw values"),
    "cartpole_pg": ("model.predict([[0.0, 0.0, 0.05, 0.0]])", "'left' or 'right' for a CartPole observation"),
}
_WORKLOAD = re.compile(r"^[a-z][a-z0-9_]*$")


def workload_of(folder) -> str | None:
    """The bundled workload that wrote the model in `folder` (its preprocessing.json), or None (a model of
    one's own script, or no preprocessing.json)."""
    file = Path(folder) / PREPROCESSING_FILE
    try:
        workload = json.loads(file.read_text()).get("workload")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(workload, str) or not _WORKLOAD.match(workload):
        return None
    try:
        module = importlib.import_module(f"training_scripts.{workload}")
    except ImportError:
        return None
    return workload if callable(getattr(module, "load_model", None)) else None


def usage_snippet(folder) -> str | None:
    """Three lines of Python that load and use the model downloaded into `folder`, or None when it is not
    a bundled workload's."""
    workload = workload_of(folder)
    if workload is None:
        return None
    expression, comment = EXAMPLES.get(workload, ("model(x)", "x: raw inputs; preprocessing is included"))
    return "\n".join([
        f"from training_scripts.{workload} import load_model",
        f"model = load_model({str(Path(folder) / MODEL_FILE)!r})  # eval mode, preprocessing included",
        f"print({expression})  # {comment}",
    ])
