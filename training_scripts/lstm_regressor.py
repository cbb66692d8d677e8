"""LSTM sequence regressor: predict the next value of a time series from a window of past values.

    python -m training_scripts.lstm_regressor                   # offline default: synthetic seasonal series
    python -m training_scripts.lstm_regressor --data=series.csv --column=load_mw --window=48
    python -m training_scripts.lstm_regressor --dry-run
    python -c "from training_scripts.lstm_regressor import load_model; print(load_model('runs/lstm_regressor').predict([[0.5] * 32]))"

Reports validation (the last `val_fraction` of the series, never shuffled into training) MSE on the
original scale, and the MSE of the naive last-value forecast for comparison.
"""
from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from training_scripts.config import ConfigError, TrainConfig, between
from training_scripts.inference import (
    AddDim, Predictor, Standardize, Unstandardize, load_network, predictor, read_model, read_preprocessing,
)
from training_scripts.loop import LOOP_METRICS, SupervisedTask, TensorData, main_entry, run_supervised, seed_everything


@dataclass(frozen=True)
class Config(TrainConfig):
    epochs: int = 20                       # passes over the training windows
    batch_size: int = 128                  # windows per step
    learning_rate: float = 3e-3            # AdamW step size
    weight_decay: float = 0.0              # AdamW weight decay
    dropout: float = 0.0                   # dropout between LSTM layers
    hidden_layers: tuple[int, ...] = (32,)  # LSTM hidden size per layer
    patience: int = 5                      # epochs without val-MSE gain before stopping
    checkpoint_every: int = 100            # steps between checkpoints
    log_every: int = 10                    # steps between metric lines
    window: int = 32                       # past values per prediction
    length: int = 6_000                    # synthetic series length when no --data
    column: str = "value"                  # CSV column with the series
    val_fraction: float = 0.2              # last share of the series held out

    BOUNDS = {**TrainConfig.BOUNDS, "hidden_layers": between(1, 8192, item="width", items=(1, 16)),
              "window": between(2, 100_000), "length": between(10, 100_000_000),
              "val_fraction": between(0, 1, low_open=True, high_open=True)}


METRICS = (*LOOP_METRICS, "val_loss", "val_mse", "naive_mse")  # what its metric lines carry


def synthetic_series(length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64)
    return (np.sin(2 * math.pi * t / 50) + 0.5 * np.sin(2 * math.pi * t / 230 + 1.0)
            + 0.0002 * t + rng.normal(0, 0.1, length)).astype(np.float32)


def load_series(path: str, column: str) -> np.ndarray:
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if column not in (reader.fieldnames or []):
                raise ConfigError(f"{path}: no column {column!r} (columns: {', '.join(reader.fieldnames or [])})")
            texts = [row[column] for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{path}: cannot read CSV ({error})") from None
    values = np.array([float(t) if _is_number(t) else np.nan for t in texts], dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ConfigError(f"{path}: column {column} has {bad.size} missing/non-numeric values (lines {(bad[:5] + 2).tolist()})")
    return values


def _is_number(text: str | None) -> bool:
    try:
        float(text)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError):
        return False


class SequenceRegressor(nn.Module):
    def __init__(self, hidden: tuple[int, ...], dropout: float):
        super().__init__()
        if len(set(hidden)) != 1:
            raise ConfigError(f"--hidden_layers for the LSTM must repeat one size, got {hidden}")
        self.lstm = nn.LSTM(1, hidden[0], num_layers=len(hidden), batch_first=True,
                            dropout=dropout if len(hidden) > 1 else 0.0)
        self.head = nn.Linear(hidden[0], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1]).squeeze(-1)


def build_model(config: Config) -> nn.Module:
    return SequenceRegressor(config.hidden_layers, config.dropout)


def load_model(path) -> Predictor:
    """A trained model (model.pt, or its folder, with preprocessing.json beside it) that takes windows of
    raw past values, N,window (or N,window,1), and predicts the next value in the series' own units:
    `model.predict(windows)`; see inference.py."""
    config, state, folder = read_model(path, Config)
    prep = read_preprocessing(folder, "lstm_regressor", ("mean", "std"))
    preprocess = nn.Sequential(Standardize(prep["mean"], prep["std"]), AddDim(-1, when_ndim=2))
    return predictor(load_network(build_model, config, state), config, preprocess=preprocess,
                     postprocess=Unstandardize(prep["mean"], prep["std"]))


def windows(series: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(len(series) - window)[:, None] + np.arange(window)[None, :]
    return series[idx][..., None], series[window:]


def build_task(config: Config) -> SupervisedTask:
    series = load_series(config.data, config.column) if config.data else synthetic_series(config.length, seed=7)
    if config.dry_run:
        series = series[:600]
    n_val = int(len(series) * config.val_fraction)
    if n_val <= config.window or len(series) - n_val <= 2 * config.window:
        raise ConfigError(f"series of {len(series)} values is too short for --window={config.window}")
    train, val = series[:-n_val], series[-n_val - config.window:]
    mean, std = float(train.mean()), float(train.std() + 1e-6)
    train_x, train_y = windows((train - mean) / std, config.window)
    val_x, val_y = windows((val - mean) / std, config.window)
    data = TensorData(*(torch.from_numpy(a.astype(np.float32)) for a in (train_x, train_y, val_x, val_y)))
    naive_mse = float(((val_x[:, -1, 0] - val_y) ** 2).mean() * std**2)
    seed_everything(config.seed)
    model = build_model(config)
    preprocessing = json.dumps({"workload": "lstm_regressor", "input": "N,window raw past values",
                                "window": config.window, "mean": mean, "std": std,
                                "output": "the next value, in the series' units"}).encode()

    def evaluate(model: nn.Module, data: TensorData) -> dict:
        model.eval()
        with torch.no_grad():
            mse = nn.functional.mse_loss(model(data.val_x), data.val_y).item()
        return {"val_loss": mse, "val_mse": mse * std**2, "naive_mse": naive_mse}

    return SupervisedTask(name="lstm_regressor", model=model, data=data, loss_fn=nn.functional.mse_loss,
                          evaluate=evaluate, primary_metric="val_mse", higher_is_better=False,
                          extra_artifacts=lambda m, d: {"preprocessing.json": preprocessing})


def run(config: Config, should_stop=lambda: False) -> dict:
    return run_supervised(config, build_task, should_stop)


if __name__ == "__main__":
    sys.exit(main_entry(Config, run))
