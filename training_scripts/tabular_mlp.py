"""Tabular MLP classifier: loan grade (A-E) from applicant features.

    python -m training_scripts.tabular_mlp                      # offline default: synthetic loan book
    python -m training_scripts.tabular_mlp --data=loans.csv --epochs=30 --hidden_layers=128,64
    python -m training_scripts.tabular_mlp --dry-run            # CI smoke test
    python -m training_scripts.tabular_mlp --output=s3://bucket/runs/mlp   # artifacts + checkpoints in S3
    python -c "from training_scripts.tabular_mlp import load_model; print(load_model('runs/tabular_mlp').predict([[60_000, 15_000, 700, 18, 5, 9, 0, 36]]))"

A CSV must have the columns in SCHEMA plus `grade` (A-E); missing values, out-of-range values and
missing columns are refused with a one-line error naming the column and rows.
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from training_scripts.config import ConfigError, TrainConfig, between
from training_scripts.inference import Predictor, Standardize, load_network, predictor, read_model, read_preprocessing
from training_scripts.loop import (
    LOOP_METRICS, SupervisedTask, TensorData, classification_eval, classification_extras, main_entry, mlp,
    run_supervised, seed_everything,
)


@dataclass(frozen=True)
class Config(TrainConfig):
    epochs: int = 25                      # passes over the training set
    batch_size: int = 256                 # rows per step
    learning_rate: float = 3e-3           # AdamW step size
    weight_decay: float = 1e-4            # AdamW weight decay
    dropout: float = 0.1                  # hidden-layer dropout
    hidden_layers: tuple[int, ...] = (128, 64)  # hidden widths
    patience: int = 5                     # epochs without val-accuracy gain before stopping
    checkpoint_every: int = 100           # steps between checkpoints
    log_every: int = 10                   # steps between metric lines
    rows: int = 20_000                    # synthetic rows when no --data is given
    val_fraction: float = 0.2             # held-out share of rows

    BOUNDS = {**TrainConfig.BOUNDS, "rows": between(10, 10_000_000),
              "val_fraction": between(0, 1, low_open=True, high_open=True)}


METRICS = (*LOOP_METRICS, "val_loss", "val_accuracy")  # what its metric lines carry (a campaign target names one)


GRADES = "ABCDE"
SCHEMA = {  # column: (min, max)
    "annual_income": (5_000.0, 2_000_000.0),
    "loan_amount": (500.0, 100_000.0),
    "credit_score": (300.0, 850.0),
    "debt_to_income": (0.0, 100.0),
    "years_employed": (0.0, 60.0),
    "open_accounts": (0.0, 100.0),
    "delinquencies": (0.0, 50.0),
    "term_months": (12.0, 84.0),
}


def synthetic_loans(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A loan book whose grade follows a noisy risk score (so there is real signal, not a lookup)."""
    rng = np.random.default_rng(seed)
    income = np.clip(rng.lognormal(11.0, 0.5, rows), 5_000, 2_000_000)
    amount = np.clip(rng.lognormal(9.5, 0.6, rows), 500, 100_000)
    score = np.clip(rng.normal(690, 60, rows), 300, 850)
    dti = np.clip(rng.gamma(4.0, 4.5, rows), 0, 100)
    years = np.clip(rng.exponential(6.0, rows), 0, 60)
    accounts = np.clip(rng.poisson(9, rows), 0, 100).astype(float)
    delinquencies = np.clip(rng.poisson(0.4, rows), 0, 50).astype(float)
    term = rng.choice([36.0, 60.0], rows, p=[0.7, 0.3])
    risk = (-(score - 690) / 60 + (dti - 18) / 9 + 0.9 * np.log(amount / income * 10) + 0.8 * delinquencies
            - 0.05 * years + 0.6 * (term == 60) + 0.03 * (accounts - 9) + rng.normal(0, 0.35, rows))
    grade = np.digitize(risk, np.quantile(risk, [0.2, 0.4, 0.6, 0.8]))
    features = np.stack([income, amount, score, dti, years, accounts, delinquencies, term], axis=1)
    return features.astype(np.float32), grade.astype(np.int64)


def load_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in (*SCHEMA, "grade") if c not in header]
            if missing:
                raise ConfigError(f"{path}: missing columns {', '.join(missing)}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{path}: cannot read CSV ({error})") from None
    if not rows:
        raise ConfigError(f"{path}: no data rows")
    features = np.empty((len(rows), len(SCHEMA)), dtype=np.float32)
    for j, (column, (low, high)) in enumerate(SCHEMA.items()):
        values, bad_missing, bad_range = [], [], []
        for i, row in enumerate(rows, start=2):
            text = (row[column] or "").strip()
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if np.isnan(value):
                bad_missing.append(i)
            elif not low <= value <= high:
                bad_range.append(i)
            values.append(value)
        if bad_missing:
            raise ConfigError(f"{path}: column {column} has {len(bad_missing)} missing/non-numeric values (lines {bad_missing[:5]})")
        if bad_range:
            raise ConfigError(f"{path}: column {column} has {len(bad_range)} values outside [{low:g}, {high:g}] (lines {bad_range[:5]})")
        features[:, j] = values
    labels = []
    for i, row in enumerate(rows, start=2):
        grade = (row["grade"] or "").strip().upper()
        if grade not in GRADES:
            raise ConfigError(f"{path}: line {i}: grade {row['grade']!r} is not one of {', '.join(GRADES)}")
        labels.append(GRADES.index(grade))
    return features, np.array(labels, dtype=np.int64)


def build_model(config: Config) -> nn.Module:
    return mlp(len(SCHEMA), config.hidden_layers, len(GRADES), config.dropout)


def load_model(path) -> Predictor:
    """A trained model (model.pt, or its folder, with preprocessing.json beside it) that takes raw rows of
    SCHEMA's columns (in that order) and predicts grades A-E: `model.predict(rows)`; see inference.py."""
    config, state, folder = read_model(path, Config)
    prep = read_preprocessing(folder, "tabular_mlp", ("transform", "mean", "std", "classes"))
    standardize = Standardize(prep["mean"], prep["std"], log1p=prep["transform"].startswith("log1p"))
    return predictor(load_network(build_model, config, state), config, preprocess=standardize, classes=prep["classes"])


def build_task(config: Config) -> SupervisedTask:
    rows = 512 if config.dry_run else config.rows
    features, labels = load_csv(config.data) if config.data else synthetic_loans(rows, seed=1234)
    split = np.random.default_rng(config.seed).permutation(len(labels))
    n_val = max(1, int(len(labels) * config.val_fraction))
    val, train = split[:n_val], split[n_val:]
    features = np.log1p(features)  # heavy-tailed money columns; monotone for the rest
    mean, std = features[train].mean(axis=0), features[train].std(axis=0) + 1e-6
    features = (features - mean) / std
    data = TensorData(torch.from_numpy(features[train]), torch.from_numpy(labels[train]),
                      torch.from_numpy(features[val]), torch.from_numpy(labels[val]))
    seed_everything(config.seed)
    model = build_model(config)
    preprocessing = json.dumps({"workload": "tabular_mlp", "columns": list(SCHEMA), "transform": "log1p then standardize",
                                "mean": mean.tolist(), "std": std.tolist(), "classes": list(GRADES)}).encode()
    return SupervisedTask(
        name="tabular_mlp", model=model, data=data, loss_fn=nn.functional.cross_entropy,
        evaluate=classification_eval, primary_metric="val_accuracy", higher_is_better=True,
        extra_artifacts=lambda m, d: {**classification_extras(m, d, len(GRADES)), "preprocessing.json": preprocessing},
    )


def run(config: Config, should_stop=lambda: False) -> dict:
    return run_supervised(config, build_task, should_stop)


if __name__ == "__main__":
    sys.exit(main_entry(Config, run))
