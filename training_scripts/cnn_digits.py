"""Small CNN image classifier: handwritten digits.

    python -m training_scripts.cnn_digits                     # offline default: scikit-learn's bundled 8x8 digits
    python -m training_scripts.cnn_digits --data=/data/mnist  # MNIST IDX files (train-images-idx3-ubyte[.gz], ...)
    python -m training_scripts.cnn_digits --dry-run
    python -c "from training_scripts.cnn_digits import load_model; print(load_model('runs/cnn_digits').predict([[[0.0] * 8] * 8]))"

With --data, the directory must hold `train-images-idx3-ubyte` and `train-labels-idx1-ubyte`
(optionally gzipped); `t10k-*` files, when present, are the validation set.
"""
from __future__ import annotations

import gzip
import json
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training_scripts.config import ConfigError, TrainConfig, between
from training_scripts.inference import (
    AddDim, Predictor, Standardize, load_network, predictor, read_model, read_preprocessing,
)
from training_scripts.loop import (
    LOOP_METRICS, SupervisedTask, TensorData, classification_eval, classification_extras, main_entry, mlp,
    run_supervised, seed_everything,
)


@dataclass(frozen=True)
class Config(TrainConfig):
    epochs: int = 30                       # passes over the training set
    batch_size: int = 64                   # images per step
    learning_rate: float = 2e-3            # AdamW step size
    weight_decay: float = 1e-4             # AdamW weight decay
    dropout: float = 0.2                   # dropout before the classifier head
    hidden_layers: tuple[int, ...] = (128,)  # classifier-head widths
    channels: tuple[int, ...] = (16, 32)   # conv widths
    patience: int = 6                      # epochs without val-accuracy gain before stopping
    checkpoint_every: int = 100            # steps between checkpoints
    log_every: int = 10                    # steps between metric lines
    val_fraction: float = 0.2              # held-out share when no t10k files are given

    BOUNDS = {**TrainConfig.BOUNDS, "channels": between(1, 4096, item="width", items=(0, 16)),
              "val_fraction": between(0, 1, low_open=True, high_open=True)}


METRICS = (*LOOP_METRICS, "val_loss", "val_accuracy")  # what its metric lines carry (a campaign target names one)


class DigitCNN(nn.Module):
    def __init__(self, channels: tuple[int, ...], hidden: tuple[int, ...], dropout: float, classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        for out_ch in channels:
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU()]
            in_ch = out_ch
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), mlp(in_ch * 16, hidden, classes, dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(config: Config) -> nn.Module:
    return DigitCNN(config.channels, config.hidden_layers, config.dropout)


def load_model(path) -> Predictor:
    """A trained model (model.pt, or its folder, with preprocessing.json beside it) that takes raw images,
    N,H,W (or N,1,H,W) pixel values as in its training data (0-16 for the bundled digits, 0-255 for MNIST),
    and predicts digits '0'-'9': `model.predict(images)`; see inference.py."""
    config, state, folder = read_model(path, Config)
    prep = read_preprocessing(folder, "cnn_digits", ("scale", "mean", "std", "classes"))
    preprocess = nn.Sequential(Standardize(prep["mean"], prep["std"], scale=prep["scale"]), AddDim(1, when_ndim=3))
    return predictor(load_network(build_model, config, state), config, preprocess=preprocess, classes=prep["classes"])


def _read_idx(path: Path, magic: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error})") from None
    if len(data) < 8 or struct.unpack(">I", data[:4])[0] != magic:
        raise ConfigError(f"{path}: not an IDX file (magic number {magic:#x} expected)")
    dims = data[3]
    shape = struct.unpack(f">{dims}I", data[4:4 + 4 * dims])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise ConfigError(f"{path}: header says {shape} but holds {body.size} bytes")
    return body.reshape(shape)


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_idx_pair(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    images_path, labels_path = _find(directory, f"{prefix}-images-idx3-ubyte"), _find(directory, f"{prefix}-labels-idx1-ubyte")
    if images_path is None and labels_path is None:
        return None
    if images_path is None or labels_path is None:
        raise ConfigError(f"{directory}: {prefix} images and labels must both be present")
    images, labels = _read_idx(images_path, 0x803), _read_idx(labels_path, 0x801)
    if len(images) != len(labels):
        raise ConfigError(f"{directory}: {len(images)} {prefix} images but {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise ConfigError(f"{labels_path}: labels must be digits 0-9")
    return images.astype(np.float32) / 255.0, labels.astype(np.int64)


def load_data(config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    if not config.data:
        from sklearn.datasets import load_digits

        digits = load_digits()
        return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64), None, None
    directory = Path(config.data)
    if not directory.is_dir():
        raise ConfigError(f"--data={config.data}: not a directory of MNIST IDX files")
    train = load_idx_pair(directory, "train")
    if train is None:
        raise ConfigError(f"{directory}: no train-images-idx3-ubyte / train-labels-idx1-ubyte")
    test = load_idx_pair(directory, "t10k")
    return (*train, *(test if test else (None, None)))


def build_task(config: Config) -> SupervisedTask:
    images, labels, val_images, val_labels = load_data(config)
    if val_images is None:
        order = np.random.default_rng(config.seed).permutation(len(labels))
        n_val = max(1, int(len(labels) * config.val_fraction))
        val_images, val_labels = images[order[:n_val]], labels[order[:n_val]]
        images, labels = images[order[n_val:]], labels[order[n_val:]]
    if config.dry_run:
        images, labels, val_images, val_labels = images[:256], labels[:256], val_images[:64], val_labels[:64]
    mean, std = float(images.mean()), float(images.std() + 1e-6)
    preprocessing = json.dumps({"workload": "cnn_digits", "input": "N,H,W raw pixel values",
                                "scale": 1 / 255.0 if config.data else 1 / 16.0,  # load_data's pixel scaling
                                "mean": mean, "std": std, "classes": [str(d) for d in range(10)]}).encode()
    as_tensor = lambda a: torch.from_numpy((a - mean) / std).unsqueeze(1)  # noqa: E731  N,1,H,W
    data = TensorData(as_tensor(images), torch.from_numpy(labels), as_tensor(val_images), torch.from_numpy(val_labels))
    seed_everything(config.seed)
    model = build_model(config)
    return SupervisedTask(
        name="cnn_digits", model=model, data=data, loss_fn=nn.functional.cross_entropy,
        evaluate=classification_eval, primary_metric="val_accuracy", higher_is_better=True,
        extra_artifacts=lambda m, d: {**classification_extras(m, d, 10), "preprocessing.json": preprocessing},
    )


def run(config: Config, should_stop=lambda: False) -> dict:
    return run_supervised(config, build_task, should_stop)


if __name__ == "__main__":
    sys.exit(main_entry(Config, run))
