"""Each workload: --dry-run from the command line, sensible metrics on its offline data, clear input errors."""
from __future__ import annotations

import gzip
import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training_scripts import cartpole_pg, cnn_digits, lstm_regressor, tabular_mlp
from training_scripts.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ["tabular_mlp", "cnn_digits", "lstm_regressor", "cartpole_pg"]


def _cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"training_scripts.{module}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("module", WORKLOADS)
def test_dry_run_writes_complete_checksummed_run(module, tmp_path):
    result = _cli(module, "--dry-run", f"--output={tmp_path}")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "result.json").read_text())
    assert summary["status"] == "complete"
    for name, digest in summary["artifacts"].items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest
    assert {"model.pt", "config.json", "metrics.jsonl"} <= set(summary["artifacts"])
    assert summary["train_flops_per_sample"] > 0
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines and all("step" in line for line in lines)


@pytest.mark.parametrize("module", WORKLOADS)
def test_bad_option_exits_2_with_one_line(module, tmp_path):
    result = _cli(module, "--epochs=-1", f"--output={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: ")
    assert not (tmp_path / "result.json").exists()


def test_tabular_reaches_sensible_accuracy(tmp_path):
    result = tabular_mlp.run(tabular_mlp.Config(output=str(tmp_path)))
    assert result["final"]["val_accuracy"] > 0.7  # 5 balanced grades: chance is 0.2
    matrix = json.loads((tmp_path / "confusion_matrix.json").read_text())["matrix"]
    assert np.trace(np.array(matrix)) / np.sum(matrix) == pytest.approx(result["final"]["val_accuracy"], abs=1e-6)


def test_cnn_reaches_sensible_accuracy(tmp_path):
    result = cnn_digits.run(cnn_digits.Config(output=str(tmp_path)))
    assert result["final"]["val_accuracy"] > 0.95


def test_lstm_beats_naive_forecast(tmp_path):
    result = lstm_regressor.run(lstm_regressor.Config(output=str(tmp_path)))
    assert result["final"]["val_mse"] < 0.8 * result["final"]["naive_mse"]


def test_cartpole_learns(tmp_path):
    result = cartpole_pg.run(cartpole_pg.Config(batch_size=10, epochs=60, output=str(tmp_path)))
    assert result["final"]["final10_reward"] > 150  # a random policy averages about 22
    assert result["final"]["episodes"] == 600


def _write_csv(path: Path, rows: list[dict]) -> str:
    header = list(rows[0])
    path.write_text(",".join(header) + "\n" + "".join(",".join(str(r[h]) for h in header) + "\n" for r in rows))
    return str(path)


GOOD_ROW = {"annual_income": 60000, "loan_amount": 12000, "credit_score": 700, "debt_to_income": 15,
            "years_employed": 4, "open_accounts": 8, "delinquencies": 0, "term_months": 36, "grade": "B"}


@pytest.mark.parametrize("change, message", [
    ({"credit_score": "nan"}, "credit_score has 1 missing"),
    ({"credit_score": 1200}, r"outside \[300, 850\]"),
    ({"grade": "Z"}, "grade 'Z'"),
])
def test_tabular_csv_validation(tmp_path, change, message):
    rows = [GOOD_ROW] * 5 + [{**GOOD_ROW, **change}]
    with pytest.raises(ConfigError, match=message):
        tabular_mlp.build_task(tabular_mlp.Config(data=_write_csv(tmp_path / "loans.csv", rows)))


def test_tabular_csv_missing_column(tmp_path):
    rows = [{k: v for k, v in GOOD_ROW.items() if k != "term_months"}]
    with pytest.raises(ConfigError, match="missing columns term_months"):
        tabular_mlp.build_task(tabular_mlp.Config(data=_write_csv(tmp_path / "loans.csv", rows)))


def test_tabular_csv_trains(tmp_path):
    features, labels = tabular_mlp.synthetic_loans(400, seed=3)
    rows = [dict(zip(tabular_mlp.SCHEMA, f.tolist()), grade="ABCDE"[g]) for f, g in zip(features, labels)]
    config = tabular_mlp.Config(data=_write_csv(tmp_path / "loans.csv", rows), epochs=2, output=str(tmp_path / "out"))
    assert tabular_mlp.run(config)["final"]["steps"] > 0


def _idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_cnn_reads_mnist_idx(tmp_path):
    rng = np.random.default_rng(0)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", 0x803, rng.integers(0, 255, (120, 28, 28)))
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", 0x801, rng.integers(0, 10, 120))
    task = cnn_digits.build_task(cnn_digits.Config(data=str(tmp_path)))
    assert task.data.train_x.shape[1:] == (1, 28, 28) and task.data.train_x.shape[0] + task.data.val_x.shape[0] == 120


def test_cnn_rejects_bad_idx(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"nope")
    with pytest.raises(ConfigError, match="not an IDX file"):
        cnn_digits.build_task(cnn_digits.Config(data=str(tmp_path)))


def test_lstm_csv_validation(tmp_path):
    (tmp_path / "s.csv").write_text("value\n1\n2\nbad\n")
    with pytest.raises(ConfigError, match="1 missing/non-numeric"):
        lstm_regressor.build_task(lstm_regressor.Config(data=str(tmp_path / "s.csv")))
    with pytest.raises(ConfigError, match="no column 'load'"):
        lstm_regressor.build_task(lstm_regressor.Config(data=str(tmp_path / "s.csv"), column="load"))
