"""cifar10_resnet: dry run, exact resume, the archive reader (checksum first, arrays-only unpickling),
offline fallback to synthetic data, hostile arguments."""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from training_scripts import cifar10_resnet as cifar
from training_scripts.config import ConfigError
from training_scripts.loop import Preempted, fit, main_entry

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(width=8, synthetic_size=128, data="synthetic", batch_size=32, epochs=2, checkpoint_every=3,
             log_every=2, amp=False, channels_last=True)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One intra-op thread: on a shared CI machine two spinning threads per test run many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


def _weights(folder: Path) -> dict:
    return torch.load(folder / "model.pt", weights_only=True)["model"]


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_dry_run_cli_writes_a_complete_run_on_synthetic_data_and_the_model_loads(tmp_path):
    done = subprocess.run([sys.executable, "-m", "training_scripts.cifar10_resnet", "--dry-run", f"--output={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "complete" and result["data"] == "synthetic"
    assert result["primary_metric"] == "test_accuracy" and result["target"] == {"metric": "test_accuracy", "value": 0.94}
    assert "time_to_target_s" in result and result["precision"] == "fp32"  # amp applies on GPUs only
    assert result["channels_last"] is True and result["world_size"] == 1
    for name, digest in result["artifacts"].items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest
    model = cifar.load_model(tmp_path)
    predicted = model.predict(np.random.default_rng(0).integers(0, 256, (3, 3, 32, 32)))
    assert len(predicted) == 3 and set(predicted) <= set(cifar.CLASSES)


@pytest.mark.parametrize("stop_at", [2, 6])
def test_interrupted_run_resumes_to_identical_weights(tmp_path, stop_at):
    """Augmentation (device RNG), the one-cycle schedule, SGD momentum and BatchNorm all resume exactly."""
    base = cifar.Config(**SMALL)
    cifar.run(replace(base, output=str(tmp_path / "a")))
    interrupted = replace(base, output=str(tmp_path / "b"))
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] == stop_at

    with pytest.raises(Preempted):
        fit(interrupted, cifar.build_task(interrupted), should_stop=stop, echo=False)
    assert cifar.run(interrupted)["attempts"] == 2
    _assert_same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))


def test_augment_crops_flips_and_cuts_out():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32) + 1.0
    out = cifar.augment(x, padding=4, cutout=8)
    assert out.shape == x.shape
    assert ((out == 0).sum(dim=(1, 2, 3)) > 0).all()  # every image has a zeroed square (inputs are all > 0)
    assert torch.equal(cifar.augment(x, padding=0, cutout=0).abs().sum(), x.sum())  # flips only move pixels
    torch.manual_seed(0)
    assert torch.equal(cifar.augment(x, 4, 8), out)  # drawn from the (checkpointed) global RNG


def _archive(path: Path, payload: dict | None = None) -> str:
    """A CIFAR-shaped python-version archive; returns its MD5."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as archive:
        for member in cifar.CIFAR_MEMBERS:
            batch = payload or {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                                b"labels": rng.integers(0, 10, 20).tolist()}
            data = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_archive_is_checksummed_then_read_as_arrays(tmp_path):
    md5 = _archive(tmp_path / "c.tar.gz")
    train_x, train_y, test_x, test_y = cifar.read_archive(tmp_path / "c.tar.gz", md5=md5)
    assert train_x.shape == (100, 3, 32, 32) and test_x.shape == (20, 3, 32, 32) and train_x.dtype == np.uint8
    assert train_y.shape == (100,) and 0 <= train_y.min() and train_y.max() <= 9
    with pytest.raises(ConfigError, match="not the published"):
        cifar.read_archive(tmp_path / "c.tar.gz")  # the real archive's MD5: this file is not it


def test_a_planted_pickle_never_runs_even_with_a_matching_checksum(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    md5 = _archive(tmp_path / "evil.tar.gz", payload={b"data": Payload()})
    with pytest.raises(ConfigError, match="not allowed"):
        cifar.read_archive(tmp_path / "evil.tar.gz", md5=md5)
    assert not marker.exists()


def test_download_into_the_cache_is_verified_and_offline_falls_back_to_synthetic(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINFLEET_DATA_CACHE", str(tmp_path / "cache"))
    md5 = _archive(tmp_path / "c.tar.gz")
    path = cifar.fetch_archive(url=(tmp_path / "c.tar.gz").as_uri(), md5=md5)
    assert path == tmp_path / "cache" / "cifar10" / "cifar-10-python.tar.gz" and path.is_file()
    with pytest.raises(ConfigError, match="MD5"):
        cifar.fetch_archive(url=(tmp_path / "c.tar.gz").as_uri(), md5="0" * 32)
    monkeypatch.setattr(cifar, "fetch_archive", lambda: None)  # what an unreachable network returns
    (arrays, source) = cifar.load_data(cifar.Config(synthetic_size=50))
    assert source == "synthetic" and arrays[0].shape == (50, 3, 32, 32)


def test_unreachable_network_means_synthetic(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRAINFLEET_DATA_CACHE", str(tmp_path))
    assert cifar.fetch_archive(url="http://127.0.0.1:9/cifar.tar.gz", timeout=5) is None  # discard port: refused
    assert "using synthetic data" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--width=0"], "--width"),
    (["--cutout=99"], "--cutout"),
    (["--momentum=1.5"], "--momentum"),
    (["--amp_dtype=fp8"], "--amp_dtype must be one of"),
    (["--data_placement=disk"], "--data_placement must be one of"),
    (["--data=/nonexistent/cifar.tar.gz"], "no such file"),
    (["--epochs=-1"], "--epochs must be positive"),
])
def test_hostile_arguments_exit_2_with_one_line(tmp_path, capsys, argv, message):
    assert main_entry(cifar.Config, cifar.run, [*argv, f"--output={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and message in err
    assert not (tmp_path / "result.json").exists()


def test_hostile_argument_exits_2_from_the_command_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "training_scripts.cifar10_resnet", "--width=-3", f"--output={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.strip().count("\n") == 0
