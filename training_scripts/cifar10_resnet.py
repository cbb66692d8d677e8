"""CIFAR-10 to 94% test accuracy with a ResNet-9: the DAWNBench recipe (time and cost to 94%).

    python -m training_scripts.cifar10_resnet                    # real CIFAR-10 (downloaded once, checksum-verified)
    python -m training_scripts.cifar10_resnet --data=synthetic   # offline: CIFAR-shaped synthetic images
    python -m training_scripts.cifar10_resnet --data=/data/cifar-10-python.tar.gz
    python -m training_scripts.cifar10_resnet --dry-run          # CI smoke test (synthetic, 3 small steps)
    torchrun --standalone --nproc_per_node=4 training_scripts/cifar10_resnet.py   # one process per GPU

The network and schedule are David Page's DAWNBench entry ("How to train your ResNet", Myrtle.ai, 2018):
ResNet-9 (prep 64, layer 128 + residual, 256, 512 + residual, max-pool, linear x 0.125), SGD with
Nesterov momentum, batch 512, a linear one-cycle learning rate (0 -> 0.4 over 5 epochs -> 0 at epoch 24),
weight decay 5e-4, label smoothing 0.2, random 32x32 crops of 4-pixel reflect-padded images, horizontal
flips and 8x8 cutout; test-time flip augmentation. Page reports 94% in 24 epochs (79 s on one V100).
Augmentation runs on the device, per batch. Mixed precision (bf16 on Ampere and newer, fp16 + scaler
before) and channels-last are on by default; both apply on GPUs only.

Data: with no --data the python-version archive is downloaded from the CIFAR site into
$TRAINFLEET_DATA_CACHE (default ~/.cache/trainfleet) and its MD5 checked against the published value before
anything in it is read. Where there is no network (tests, the embedded default, an offline host), the
run uses synthetic CIFAR-shaped data instead, warns, and says `"data": "synthetic"` in result.json:
time-to-94% measured on it is not a CIFAR-10 figure. The target metric is `test_accuracy`.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from training_scripts.config import ConfigError, TrainConfig, between
from training_scripts.inference import Predictor, Standardize, load_network, predictor, read_model, read_preprocessing
from training_scripts.loop import (
    LOOP_METRICS, SupervisedTask, TensorData, classification_extras, main_entry, run_supervised, seed_everything,
)

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# MD5 as published on the CIFAR page (and pinned by torchvision). MD5 is broken for collisions, not for
# second preimages of a file fixed in 2009, and the batches are only unpickled with a loader that refuses
# everything but numpy arrays (see _ArrayUnpickler): the checksum comes first, the unpickling second.
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR_MEMBERS = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)] + ["cifar-10-batches-py/test_batch"]
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class Config(TrainConfig):
    epochs: int = 24                 # passes over the 50,000 training images
    batch_size: int = 512            # images per step (over all GPUs)
    learning_rate: float = 0.4       # peak SGD step size of the one-cycle schedule (mean loss)
    weight_decay: float = 5e-4       # SGD (coupled) weight decay
    momentum: float = 0.9            # Nesterov momentum
    warmup_epochs: float = 5.0       # linear ramp 0 -> learning_rate (at most `epochs`), then to 0 at `epochs`
    label_smoothing: float = 0.2     # cross-entropy label smoothing
    crop_padding: int = 4            # random crops of images reflect-padded by this many pixels (0 = off)
    cutout: int = 8                  # side of the zeroed square per training image (0 = off)
    width: int = 64                  # channels of the first layer (ResNet-9: width x 1, 2, 4, 8)
    target_accuracy: float = 0.94    # time-to-target is reported for this test accuracy (DAWNBench: 0.94)
    synthetic_size: int = 10_000     # training images when the data is synthetic (test set: a fifth of it)
    checkpoint_every: int = 200      # steps between checkpoints
    log_every: int = 20              # steps between metric lines
    amp: bool = True                 # mixed precision on GPU
    channels_last: bool = True       # NHWC convolutions

    BOUNDS = {**TrainConfig.BOUNDS, "momentum": between(0, 1, high_open=True), "warmup_epochs": between(0, 100_000),
              "label_smoothing": between(0, 1, high_open=True), "crop_padding": between(0, 16),
              "cutout": between(0, 32), "width": between(1, 1024), "target_accuracy": between(0, 1, low_open=True),
              "synthetic_size": between(10, 10_000_000)}


METRICS = (*LOOP_METRICS, "test_loss", "test_accuracy")  # what its metric lines carry (a campaign target names one)


# ----------------------------------------------------------------------------- model
def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    def __init__(self, width: int = 64, classes: int = 10, scale: float = 0.125) -> None:
        super().__init__()
        w = width
        self.scale = scale
        self.net = nn.Sequential(
            conv_bn(3, w),
            conv_bn(w, 2 * w), nn.MaxPool2d(2), Residual(2 * w),
            conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),
            conv_bn(4 * w, 8 * w), nn.MaxPool2d(2), Residual(8 * w),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8 * w, classes, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.scale


def build_model(config: Config) -> nn.Module:
    return ResNet9(config.width, len(CLASSES))


# ----------------------------------------------------------------------------- data
class _ArrayUnpickler(pickle.Unpickler):
    """The CIFAR batches are pickles (the dataset's own format): allow numpy arrays and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")}  # how protocol-2 pickles written by Python 3 spell bytes

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_archive(path: Path, md5: str = CIFAR_MD5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images N,3,32,32 uint8, train labels, test images, test labels) from the python-version
    archive, after checking its MD5."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file (expected cifar-10-python.tar.gz)")
    actual = md5_file(path)
    if actual != md5:
        raise ConfigError(f"{path}: MD5 {actual} is not the published {md5}: not the CIFAR-10 python archive")
    batches = {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in CIFAR_MEMBERS:
                handle = archive.extractfile(member)
                if handle is None:
                    raise KeyError(member)
                batches[member] = _ArrayUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
    except (KeyError, tarfile.TarError, pickle.UnpicklingError, EOFError) as error:
        raise ConfigError(f"{path}: not a readable CIFAR-10 archive ({error})") from None

    def arrays(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        images = np.concatenate([np.asarray(batches[n][b"data"], dtype=np.uint8) for n in names])
        labels = np.concatenate([np.asarray(batches[n][b"labels"], dtype=np.int64) for n in names])
        if images.shape[1:] != (3072,) or len(images) != len(labels) or labels.min() < 0 or labels.max() > 9:
            raise ConfigError(f"{path}: batch shapes or labels are not CIFAR-10's")
        return images.reshape(-1, 3, 32, 32), labels

    return (*arrays(CIFAR_MEMBERS[:5]), *arrays(CIFAR_MEMBERS[5:]))


def cache_dir() -> Path:
    return Path(os.environ.get("TRAINFLEET_DATA_CACHE") or Path.home() / ".cache" / "trainfleet")


def fetch_archive(url: str = CIFAR_URL, md5: str = CIFAR_MD5, timeout: float = 60.0) -> Path | None:
    """The verified archive in the cache, downloading it if needed; None when the network is unreachable."""
    target = cache_dir() / "cifar10" / "cifar-10-python.tar.gz"
    if target.is_file() and md5_file(target) == md5:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:  # nosec B310  # CIFAR_URL (https), MD5-checked
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
    except urllib.error.HTTPError as error:  # reachable, but not there: not a reason to train on noise
        partial.unlink(missing_ok=True)
        raise ConfigError(f"{url}: HTTP {error.code} downloading CIFAR-10") from None
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        partial.unlink(missing_ok=True)
        print(f"warning: cannot download CIFAR-10 ({getattr(error, 'reason', error)}): using synthetic data",
              file=sys.stderr, flush=True)
        return None
    if md5_file(partial) != md5:
        partial.unlink(missing_ok=True)
        raise ConfigError(f"{url}: the downloaded archive's MD5 is not the published {md5}")
    partial.replace(target)
    return target


def synthetic_cifar(n_train: int, n_test: int, seed: int) -> tuple[np.ndarray, ...]:
    """CIFAR-shaped uint8 images: a smooth per-class colour pattern plus noise (learnable, not trivial)."""
    rng = np.random.default_rng(seed)
    templates = rng.normal(0.0, 1.0, (10, 3, 4, 4)).repeat(8, axis=2).repeat(8, axis=3)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, n)
        images = 128 + 35 * templates[labels] + rng.normal(0.0, 45.0, (n, 3, 32, 32))
        return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64)

    return (*sample(n_train), *sample(n_test))


def load_data(config: Config) -> tuple[tuple[np.ndarray, ...], str]:
    """The four arrays and where they came from: "cifar10" or "synthetic"."""
    if config.data == "synthetic" or (config.dry_run and not config.data):
        n = 256 if config.dry_run else config.synthetic_size
        return synthetic_cifar(n, max(64, n // 5), seed=1234), "synthetic"
    path = Path(config.data) if config.data else fetch_archive()
    if path is None:
        return synthetic_cifar(config.synthetic_size, config.synthetic_size // 5, seed=1234), "synthetic"
    return read_archive(path), "cifar10"


# ----------------------------------------------------------------------------- training
def augment(x: torch.Tensor, padding: int, cutout: int) -> torch.Tensor:
    """Per image: a random crop of the reflect-padded image, a horizontal flip half the time, and a
    zeroed cutout square; all on the device, drawn from the global (checkpointed) RNG."""
    n, c, h, w = x.shape
    device = x.device
    if padding:
        padded = F.pad(x, (padding,) * 4, mode="reflect")
        dy = torch.randint(0, 2 * padding + 1, (n, 1), device=device) + torch.arange(h, device=device)
        dx = torch.randint(0, 2 * padding + 1, (n, 1), device=device) + torch.arange(w, device=device)
        batch = torch.arange(n, device=device)[:, None, None, None]
        chans = torch.arange(c, device=device)[None, :, None, None]
        x = padded[batch, chans, dy[:, None, :, None], dx[:, None, None, :]]
    flip = torch.rand(n, device=device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if cutout:
        y0 = torch.randint(0, h, (n, 1, 1), device=device) - cutout // 2
        x0 = torch.randint(0, w, (n, 1, 1), device=device) - cutout // 2
        rows = torch.arange(h, device=device)[None, :, None]
        cols = torch.arange(w, device=device)[None, None, :]
        inside = (rows >= y0) & (rows < y0 + cutout) & (cols >= x0) & (cols < x0 + cutout)
        x = x * ~inside[:, None]
    return x


def one_cycle(epochs: float, warmup: float):
    """Learning-rate multiplier at a (fractional) epoch: 0 -> 1 over `warmup`, then 1 -> 0 at `epochs`."""
    def schedule(at: float) -> float:
        return float(np.interp(at, [0.0, min(warmup, epochs), float(epochs)], [0.0, 1.0, 0.0]))
    return schedule


def evaluate(model: nn.Module, data: TensorData, label_smoothing: float = 0.0) -> dict:
    """Test loss and accuracy with flip test-time augmentation (the mean of both views' logits)."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, data.val_y.shape[0]
    with torch.no_grad():
        for start in range(0, n, 1000):
            x, y = data.val_x[start:start + 1000], data.val_y[start:start + 1000]
            logits = (model(x).float() + model(x.flip(3)).float()) / 2  # fp32 before adding two bf16 views
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(dim=1) == y).sum().item()
    return {"test_loss": loss_sum / n, "test_accuracy": correct / n}


def build_task(config: Config) -> SupervisedTask:
    (train_x, train_y, test_x, test_y), source = load_data(config)
    if config.dry_run:
        train_x, train_y, test_x, test_y = train_x[:256], train_y[:256], test_x[:16], test_y[:16]
    mean = train_x.reshape(len(train_x), 3, -1).mean(axis=(0, 2)).reshape(1, 3, 1, 1) / 255.0
    std = train_x.reshape(len(train_x), 3, -1).std(axis=(0, 2)).reshape(1, 3, 1, 1) / 255.0 + 1e-6
    preprocessing = json.dumps({"workload": "cifar10_resnet", "input": "N,3,32,32 raw pixel values 0-255",
                                "scale": 1 / 255.0, "mean": mean.ravel().tolist(), "std": std.ravel().tolist(),
                                "classes": list(CLASSES), "data": source}).encode()
    as_tensor = lambda a: torch.from_numpy(((a / 255.0 - mean) / std).astype(np.float32))  # noqa: E731
    data = TensorData(as_tensor(train_x), torch.from_numpy(train_y), as_tensor(test_x), torch.from_numpy(test_y))
    seed_everything(config.seed)
    model = build_model(config)
    smoothing = config.label_smoothing
    return SupervisedTask(
        name="cifar10_resnet", model=model, data=data,
        loss_fn=lambda logits, y: F.cross_entropy(logits.float(), y, label_smoothing=smoothing),
        evaluate=evaluate, primary_metric="test_accuracy", higher_is_better=True,
        optimizer=lambda m: torch.optim.SGD(  # fused on a GPU: one kernel, and no per-step sync under the fp16 scaler
            m.parameters(), lr=config.learning_rate, momentum=config.momentum, nesterov=config.momentum > 0,
            weight_decay=config.weight_decay, fused=next(m.parameters()).device.type == "cuda"),
        lr_schedule=one_cycle(config.epochs, config.warmup_epochs),
        augment=lambda x: augment(x, config.crop_padding, config.cutout),
        target=config.target_accuracy, info={"data": source},
        extra_artifacts=lambda m, d: {**classification_extras(m, d, len(CLASSES)), "preprocessing.json": preprocessing},
    )


def run(config: Config, should_stop=lambda: False) -> dict:
    if config.dry_run:  # three steps of 8 images through a narrow ResNet-9: affordable on a CI CPU
        config = replace(config, batch_size=min(config.batch_size, 8), width=min(config.width, 16))
    return run_supervised(config, build_task, should_stop)


def load_model(path) -> Predictor:
    """A trained model (model.pt, or its folder, with preprocessing.json beside it) that takes raw images,
    N,3,32,32 pixel values 0-255 as in the CIFAR-10 archive, and predicts class names:
    `model.predict(images)`; see inference.py."""
    config, state, folder = read_model(path, Config)
    prep = read_preprocessing(folder, "cifar10_resnet", ("mean", "std", "classes"))
    shape = lambda values: [[[v]] for v in values]  # noqa: E731  per channel: 3,1,1
    preprocess = Standardize(shape(prep["mean"]), shape(prep["std"]), scale=1 / 255.0)
    return predictor(load_network(build_model, config, state), config, preprocess=preprocess, classes=prep["classes"])


if __name__ == "__main__":
    sys.exit(main_entry(Config, run))
