"""gpt_tokens: dry run with tokens/s and MFU, exact resume, the FLOPs count, mixed precision and the peak
the MFU is computed against, checksummed data, hostile arguments."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from training_scripts import gpt_tokens as gpt
from training_scripts.config import ConfigError
from training_scripts.loop import Preempted, count_flops_per_sample, fit, main_entry, peak_tflops

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, batch_size=8, data="synthetic", synthetic_tokens=3000,
            window_stride=16, epochs=2, checkpoint_every=7, log_every=5, dropout=0.1, warmup_steps=3)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


def _weights(folder: Path) -> dict:
    return torch.load(folder / "model.pt", weights_only=True)["model"]


def test_dry_run_cli_reports_tokens_per_second_and_mfu_against_the_given_peak(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
           "TRAINFLEET_PEAK_TFLOPS": json.dumps({"device": "cpu", "fp32": 0.5})}
    done = subprocess.run([sys.executable, "-m", "training_scripts.gpt_tokens", "--dry-run", f"--output={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "complete" and result["data"] == "synthetic" and result["precision"] == "fp32"
    config = gpt.Config(**{k: v for k, v in result["config"].items() if k != "hidden_layers"})
    per_token = gpt.flops_per_token(config, result["parameters"])
    assert result["train_flops_per_sample"] == per_token * config.block_size
    assert result["tokens_per_s"] == pytest.approx(result["samples_per_s"] * config.block_size)
    assert result["peak_tflops"] == 0.5
    assert result["mfu"] == pytest.approx(result["train_flops_per_sample"] * result["samples_per_s"] / 0.5e12)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all("tokens_per_s" in r and "mfu" in r for r in lines if "samples_per_s" in r)
    for name, digest in result["artifacts"].items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest
    logits = gpt.load_model(tmp_path)([[1, 2, 3, 4]])
    assert logits.shape == (1, 4, config.vocab_size)


def test_without_a_peak_there_is_no_mfu(tmp_path, monkeypatch):
    monkeypatch.delenv("TRAINFLEET_PEAK_TFLOPS", raising=False)
    result = gpt.run(gpt.Config(**{**TINY, "epochs": 1}, output=str(tmp_path)))
    assert result["mfu"] is None and result["peak_tflops"] is None and result["tokens_per_s"] > 0
    assert not any("mfu" in json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines())


@pytest.mark.parametrize("stop_at", [3, 9])
def test_interrupted_run_resumes_to_identical_weights(tmp_path, stop_at):
    base = gpt.Config(**TINY)
    gpt.run(replace(base, output=str(tmp_path / "a")))
    interrupted = replace(base, output=str(tmp_path / "b"))
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] == stop_at

    with pytest.raises(Preempted):
        fit(interrupted, gpt.build_task(interrupted), should_stop=stop, echo=False)
    assert gpt.run(interrupted)["attempts"] == 2
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_counted_flops_match_torchs_flop_counter():
    config = gpt.Config(n_layer=2, n_head=4, n_embd=64, block_size=32, dropout=0.0)
    model = gpt.build_model(config)
    x, y = torch.randint(0, 256, (2, 32)), torch.randint(0, 256, (2, 32))
    counted = count_flops_per_sample(model, gpt.lm_loss, x, y)
    formula = gpt.flops_per_token(config, gpt.non_embedding_params(model)) * config.block_size
    assert formula == pytest.approx(counted, rel=0.15)  # the formula's causal attention is counted in full


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_named_autocast_dtype_runs_on_cpu_and_is_recorded(tmp_path, dtype):
    result = gpt.run(gpt.Config(**{**TINY, "epochs": 1}, amp=True, amp_dtype=dtype, output=str(tmp_path)))
    assert result["precision"] == dtype
    ckpt = torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=True)
    assert bool(ckpt["scaler"]) == (dtype == "fp16")  # a GradScaler only for fp16


def test_amp_auto_stays_fp32_on_cpu(tmp_path):
    assert gpt.run(gpt.Config(**{**TINY, "epochs": 1}, amp=True, output=str(tmp_path)))["precision"] == "fp32"


def test_peak_comes_from_the_environment_for_the_matching_device_and_precision():
    cpu = torch.device("cpu")
    env = {"TRAINFLEET_PEAK_TFLOPS": json.dumps({"device": "cuda", "gpu_count": 4, "fp32": 124.8, "fp16": 280.0})}
    assert peak_tflops(cpu, "fp32", env=env) is None  # a GPU type's peak says nothing about its CPU
    env = {"TRAINFLEET_PEAK_TFLOPS": json.dumps({"device": "cpu", "fp32": 2.0})}
    assert peak_tflops(cpu, "fp32", env=env) == 2.0
    assert peak_tflops(cpu, "bf16", env=env) is None  # no figure for it: no MFU, not a guess
    assert peak_tflops(cpu, "fp32", env={}) is None
    with pytest.raises(ConfigError, match="TRAINFLEET_PEAK_TFLOPS"):
        peak_tflops(cpu, "fp32", env={"TRAINFLEET_PEAK_TFLOPS": "{not json"})


def test_tiny_shakespeare_is_checked_against_its_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINFLEET_DATA_CACHE", str(tmp_path / "cache"))
    text = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50
    (tmp_path / "input.txt").write_bytes(text)
    url = (tmp_path / "input.txt").as_uri()
    assert gpt.fetch_text(url=url, sha256=hashlib.sha256(text).hexdigest()) == text
    assert (tmp_path / "cache" / "tinyshakespeare" / "input.txt").read_bytes() == text
    with pytest.raises(ConfigError, match="SHA-256"):
        gpt.fetch_text(url=url, sha256="0" * 64)
    assert gpt.fetch_text(url="http://127.0.0.1:9/input.txt", timeout=5) is None  # unreachable: synthetic


@pytest.mark.parametrize("argv, message", [
    (["--n_embd=30", "--n_head=4"], "multiple of --n_head"),
    (["--n_layer=0"], "--n_layer must be positive"),
    (["--vocab_size=1"], "--vocab_size"),
    (["--data=/nonexistent/corpus.txt"], "cannot read"),
    (["--block_size=4096", "--data=synthetic", "--synthetic_tokens=5000"], "too few"),
    (["--min_lr_ratio=2"], "--min_lr_ratio"),
    (["--amp_dtype=int8"], "--amp_dtype must be one of"),
])
def test_hostile_arguments_exit_2_with_one_line(tmp_path, capsys, argv, message):
    assert main_entry(gpt.Config, gpt.run, [*argv, f"--output={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and message in err
    assert not (tmp_path / "result.json").exists()


def test_text_needs_a_byte_vocabulary(tmp_path):
    (tmp_path / "c.txt").write_text("to be or not to be " * 2000)
    with pytest.raises(ConfigError, match="at least 256"):
        gpt.build_task(gpt.Config(data=str(tmp_path / "c.txt"), vocab_size=100))
