"""The GPU paths, reproduced on a CPU (issue 29): resume on fewer GPUs, a bf16 checkpoint resumed under the fp16
scaler, evaluation memory, checkpoint saves kept out of timed intervals, the last partial batch, the precision
that really runs (tf32) and its peak, and bench_loop's compiled ceiling."""
from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
import torch
from torch import nn

from training_scripts import bench_loop, gpt_tokens, loop, tabular_mlp
from training_scripts.loop import Checkpointer, Preempted, fit

CUDA = torch.device("cuda")


def _small(tmp_path, **changes) -> tabular_mlp.Config:
    return replace(tabular_mlp.Config(rows=1000, epochs=2, output=str(tmp_path)), **changes)


def _lines(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- crashes
def test_a_checkpoint_from_a_4_gpu_machine_resumes_on_a_1_gpu_machine(monkeypatch):
    restored, gpus = {}, 1

    def set_one(state, device=0):  # what CUDA does for a device the machine does not have
        if int(device) >= gpus:
            raise IndexError(f"CUDA device {device} does not exist")
        restored[int(device)] = state

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_one)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_one)  # what set_rng_state_all calls
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.full((8,), i, dtype=torch.uint8)
                                                                  for i in range(4)])
    state = loop.rng_state()
    assert len(state["cuda"]) == 4
    loop.set_rng_state(state)
    assert list(restored) == [0] and torch.equal(restored[0], state["cuda"][0])


def test_a_bf16_checkpoint_resumes_where_fp16_and_its_scaler_run(tmp_path, monkeypatch):
    """amp_dtype=auto is bf16 on an A10G and fp16 on a T4 (the spec's fallback): same config, other scaler."""
    config = _small(tmp_path, amp=True, checkpoint_every=2)
    monkeypatch.setattr(loop, "autocast_dtype", lambda c, d: torch.bfloat16)
    with pytest.raises(Preempted):
        fit(config, tabular_mlp.build_task(config), should_stop=lambda: True, echo=False)
    monkeypatch.setattr(loop, "autocast_dtype", lambda c, d: torch.float16)
    result = fit(config, tabular_mlp.build_task(config), echo=False)
    assert result["attempts"] == 2 and result["precision"] == "fp16"


def test_gpt2_evaluation_chunks_fit_a_logit_budget(monkeypatch):
    assert gpt_tokens.eval_chunk(1024, 50304) == 1  # GPT-2: one sequence (~206 MB of fp32 logits), not 64
    assert gpt_tokens.eval_chunk(256, 256) == 1024
    config = gpt_tokens.Config(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=64, data="synthetic",
                               synthetic_tokens=20_000)
    task = gpt_tokens.build_task(config)
    seen = []
    model = task.model
    model.register_forward_hook(lambda m, args, out: seen.append(out.numel()))
    budget = 4 * 16 * 64  # four sequences' logits
    monkeypatch.setattr(gpt_tokens, "EVAL_LOGITS", budget)
    monkeypatch.setattr(gpt_tokens.eval_chunk, "__defaults__", (budget,))
    metrics = gpt_tokens.evaluate(model, task.data)
    assert max(seen) <= budget and sum(seen) == task.data.val_x.shape[0] * 16 * 64
    assert metrics["val_loss"] > 0


# ----------------------------------------------------------------------------- figures
def test_checkpoint_saves_are_not_timed_as_training(tmp_path, monkeypatch):
    real_save = Checkpointer.save

    def slow_save(self, state):
        time.sleep(0.3)
        real_save(self, state)

    monkeypatch.setattr(Checkpointer, "save", slow_save)
    config = _small(tmp_path, epochs=1, log_every=1, checkpoint_every=1)  # a save right after every log line
    fit(config, tabular_mlp.build_task(config), echo=False)
    intervals = [r for r in _lines(tmp_path) if "interval_s" in r]
    assert len(intervals) >= 3 and all(r["interval_s"] < 0.3 for r in intervals), intervals


def test_the_last_partial_batch_is_dropped_so_every_step_has_one_shape(tmp_path):
    config = _small(tmp_path, epochs=2, batch_size=300)  # 800 training rows: 2 full batches, 200 left over
    task = tabular_mlp.build_task(config)
    sizes, loss_fn = [], task.loss_fn
    task.loss_fn = lambda out, y: (sizes.append(y.shape[0]), loss_fn(out, y))[1]
    result = fit(config, task, echo=False)
    train_sizes = sizes[1:]  # the first call counts FLOPs on a few samples
    assert train_sizes == [300] * 4 and result["final"]["steps"] == 4


class _Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)


@pytest.mark.parametrize("capability, model, matmul, cudnn, expected", [
    ((8, 0), _Conv(), "highest", True, "tf32"),      # cuDNN's default: convolutions on TF32 tensor cores
    ((8, 0), _Conv(), "highest", False, "fp32"),
    ((8, 0), nn.Linear(4, 2), "highest", True, "fp32"),  # matmuls: fp32 unless allowed
    ((8, 0), nn.Linear(4, 2), "high", True, "tf32"),
    ((7, 5), _Conv(), "high", True, "fp32"),         # a T4 has no TF32
])
def test_the_precision_recorded_is_the_one_that_runs(monkeypatch, capability, model, matmul, cudnn, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", cudnn)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(matmul)
    try:
        assert loop.run_precision(None, CUDA, model) == expected
        assert loop.run_precision(torch.bfloat16, CUDA, model) == "bf16"
    finally:
        torch.set_float32_matmul_precision(previous)


def test_an_fp32_cnn_on_an_a100_is_measured_against_the_tf32_peak(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    env = {loop.PEAK_TFLOPS_VAR: json.dumps({"device": "cuda", "gpu_count": 1, "fp32": 19.5, "tf32": 156.0,
                                             "fp16": 312.0})}
    precision = loop.run_precision(None, CUDA, _Conv())
    assert precision == "tf32" and loop.peak_tflops(CUDA, precision, env=env) == 156.0
    # a CNN at 60 TFLOP/s (possible on TF32 tensor cores): 38% of the tf32 peak, not 308% of the fp32 one
    assert 60.0 / loop.peak_tflops(CUDA, precision, env=env) < 1
    no_tf32 = {loop.PEAK_TFLOPS_VAR: json.dumps({"device": "cuda", "gpu_count": 1, "fp32": 19.5})}
    assert loop.peak_tflops(CUDA, "tf32", env=no_tf32) is None  # never the fp32 figure instead


def test_bench_loop_compiles_the_ceiling_when_the_loop_is_compiled(monkeypatch):
    compiled = []
    monkeypatch.setattr(loop, "wants_compile", lambda config, device: config.compile)
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: (compiled.append(fn), fn)[1])
    config = replace(tabular_mlp.Config(rows=400), compile=True, batch_size=64)
    task = tabular_mlp.build_task(config)
    assert bench_loop.ceiling(task, config, torch.device("cpu"), steps=2, warmup=1) > 0
    assert len(compiled) == 1
    compiled.clear()
    bench_loop.ceiling(task, replace(config, compile=False), torch.device("cpu"), steps=2, warmup=1)
    assert compiled == []
