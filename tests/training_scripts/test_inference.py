"""load_model: a dry-run model loads as a ready module whose preprocessing reproduces training's."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training_scripts import cartpole_pg, cnn_digits, lstm_regressor, tabular_mlp
from training_scripts.config import ConfigError
from training_scripts.inference import usage_snippet

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One dry run per workload: {workload: (config, result, folder)}."""
    runs = {}
    for module in (tabular_mlp, cnn_digits, lstm_regressor, cartpole_pg):
        name = module.__name__.rsplit(".", 1)[1]
        folder = tmp_path_factory.mktemp(name)
        config = module.Config(dry_run=True, output=str(folder))
        runs[name] = (config, module.run(config), folder)
    return runs


def test_tabular_predictions_on_raw_rows_match_training(trained):
    config, _, folder = trained["tabular_mlp"]
    model = tabular_mlp.load_model(folder / "model.pt")
    assert not model.training and model.config.hidden_layers == config.hidden_layers
    features, labels = tabular_mlp.synthetic_loans(512, seed=1234)  # the dry run's loan book
    val = np.random.default_rng(config.seed).permutation(len(labels))[:int(len(labels) * config.val_fraction)]
    raw = features[val]
    # training's own transform, applied here by hand, gives the same logits as the raw rows through the model
    logged = np.log1p(features)
    train = np.setdiff1d(np.arange(len(labels)), val)
    mean, std = logged[train].mean(axis=0), logged[train].std(axis=0) + 1e-6
    with torch.no_grad():
        expected = model.network(torch.from_numpy((logged[val] - mean) / std))
        assert torch.allclose(model(raw), expected, atol=1e-5)
    predicted = model.predict(raw.tolist())
    assert set(predicted) <= set("ABCDE") and len(predicted) == len(val)
    matrix = np.zeros((5, 5), dtype=int)
    for true, grade in zip(labels[val], predicted):
        matrix[true, "ABCDE".index(grade)] += 1
    assert matrix.tolist() == json.loads((folder / "confusion_matrix.json").read_text())["matrix"]


def test_cnn_takes_raw_pixels_and_reproduces_the_confusion_matrix(trained):
    config, _, folder = trained["cnn_digits"]
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(config.seed).permutation(len(digits.target))
    val = order[:max(1, int(len(order) * config.val_fraction))][:64]  # the dry run's validation images
    model = cnn_digits.load_model(folder)  # the folder works too
    predicted = model.predict(digits.images[val])  # raw 0-16 pixel values, N,H,W
    matrix = np.zeros((10, 10), dtype=int)
    for true, digit in zip(digits.target[val], predicted):
        matrix[true, int(digit)] += 1
    assert matrix.tolist() == json.loads((folder / "confusion_matrix.json").read_text())["matrix"]
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)  # N,1,H,W is accepted as well


def test_lstm_predicts_in_the_series_units(trained):
    config, result, folder = trained["lstm_regressor"]
    model = lstm_regressor.load_model(folder / "model.pt")
    series = lstm_regressor.synthetic_series(config.length, seed=7)[:600]
    n_val = int(len(series) * config.val_fraction)
    x, y = lstm_regressor.windows(series[-n_val - config.window:], config.window)
    predicted = np.array(model.predict(x[..., 0]))  # N,window raw values
    assert np.mean((predicted - y) ** 2) == pytest.approx(result["final"]["val_mse"], rel=1e-4)


def test_cartpole_policy_loads_with_the_trained_weights(trained):
    _, _, folder = trained["cartpole_pg"]
    model = cartpole_pg.load_model(folder / "model.pt")
    saved = torch.load(folder / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(model.network.state_dict()[k], v) for k, v in saved.items())
    assert model.predict([[0.0, 0.0, 0.05, 0.0], [0.0, 0.0, -0.05, 0.0]]) in (
        [a, b] for a in ("left", "right") for b in ("left", "right"))


def test_a_model_refuses_another_workloads_preprocessing_and_a_missing_file(trained, tmp_path):
    _, _, folder = trained["tabular_mlp"]
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "model.pt").write_bytes((folder / "model.pt").read_bytes())
    (mixed / "preprocessing.json").write_text(json.dumps({"workload": "cnn_digits"}))
    with pytest.raises(ConfigError, match="belongs to a 'cnn_digits' model"):
        tabular_mlp.load_model(mixed)
    with pytest.raises(ConfigError, match="preprocessing.json: no scale, mean, std, classes"):
        cnn_digits.load_model(mixed / "model.pt")
    cnn = json.loads((trained["cnn_digits"][2] / "preprocessing.json").read_text())
    (mixed / "preprocessing.json").write_text(json.dumps(cnn))
    with pytest.raises(ConfigError, match="do not fit the network"):
        cnn_digits.load_model(mixed / "model.pt")  # weights of an MLP into the CNN
    (mixed / "preprocessing.json").unlink()
    with pytest.raises(FileNotFoundError, match="preprocessing.json: missing"):
        tabular_mlp.load_model(mixed)
    with pytest.raises(FileNotFoundError, match="no such model file"):
        tabular_mlp.load_model(tmp_path / "nothing")


def test_a_planted_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model": {}, "config": {}, "x": Payload()}, tmp_path / "model.pt")
    with pytest.raises(ConfigError, match="not a trainfleet model file"):
        tabular_mlp.load_model(tmp_path / "model.pt")
    assert not marker.exists()


def test_usage_snippet_names_the_workload_and_runs(trained, tmp_path):
    _, _, folder = trained["lstm_regressor"]
    snippet = usage_snippet(folder)
    assert len(snippet.splitlines()) == 3
    assert snippet.startswith("from training_scripts.lstm_regressor import load_model\n")
    exec(compile(snippet, "snippet", "exec"), {})
    assert usage_snippet(tmp_path) is None  # one's own script: no preprocessing.json, no snippet
    (tmp_path / "preprocessing.json").write_text(json.dumps({"workload": "os"}))
    assert usage_snippet(tmp_path) is None  # a name that is not a bundled workload


def test_readme_inference_snippet_runs_on_a_downloaded_model(trained, tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Inference with a downloaded model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    _, _, folder = trained["tabular_mlp"]
    (tmp_path / "model").mkdir()
    for name in ("model.pt", "preprocessing.json"):  # what `models download --out model/` writes, in part
        (tmp_path / "model" / name).write_bytes((folder / name).read_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\['[A-E]'\]\n", result.stdout)
