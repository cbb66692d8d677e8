"""DistributedDataParallel on the CPU: 2 gloo ranks, per-rank shards of each global batch, rank-0
checkpoints and artifacts, and interrupted runs that resume to the uninterrupted run's weights."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from training_scripts import cifar10_resnet, ddp, gpt_tokens
from training_scripts.loop import Preempted, fit

ROOT = Path(__file__).resolve().parents[2]
GPT = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, batch_size=8, data="synthetic", synthetic_tokens=3000,
           window_stride=16, epochs=2, checkpoint_every=5, log_every=4, dropout=0.1, warmup_steps=3, device="cpu")
CIFAR = dict(width=8, synthetic_size=128, data="synthetic", batch_size=24, epochs=2, checkpoint_every=3, log_every=2,
             device="cpu")  # 5 steps an epoch: the stop flag's first poll (step 8) is mid-epoch


class Crash(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stopper(at_call: int, action):
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        if calls["n"] == at_call and action is not None:
            return action()
        return False
    return should_stop


def _crash() -> bool:
    raise Crash()


def _worker(rank: int, world: int, ports: list[int], out: str, workload: str) -> None:
    """One rank: an uninterrupted run (a), a run stopped by rank 1 alone then resumed (b), and a run
    that crashes on every rank then resumes from the last periodic checkpoint (c)."""
    torch.set_num_threads(1)
    module = {"gpt_tokens": gpt_tokens, "cifar10_resnet": cifar10_resnet}[workload]
    base = module.Config(**(GPT if workload == "gpt_tokens" else CIFAR))
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1")

    def attempt(folder: str, port: int, should_stop=lambda: False):
        os.environ["MASTER_PORT"] = str(port)
        config = replace(base, output=f"{out}/{folder}")
        return fit(config, module.build_task(config), should_stop=should_stop, echo=False)

    attempt("a", ports[0])
    # the flag is polled every loop.STOP_POLL_STEPS (8) steps: poll 1 is step 8, poll 2 step 16, poll 3 step 24
    first = 2 if workload == "gpt_tokens" else 1
    with pytest.raises(Preempted):  # only rank 1 is asked to stop: every rank stops at the same step
        attempt("b", ports[1], _stopper(first, (lambda: True) if rank == 1 else None))
    attempt("b", ports[2])
    if workload != "gpt_tokens":  # the crash path is the same code for every workload: once is enough
        return
    with pytest.raises(Crash):
        attempt("c", ports[3], _stopper(3, _crash))
    attempt("c", ports[4])


def _weights(folder: Path) -> dict:
    return torch.load(folder / "model.pt", weights_only=True)["model"]


@pytest.mark.parametrize("workload", ["gpt_tokens", "cifar10_resnet"])
def test_two_gloo_ranks_resume_to_identical_weights(tmp_path, workload):
    mp.spawn(_worker, args=(2, [_free_port() for _ in range(5)], str(tmp_path), workload), nprocs=2, join=True)
    reference = _weights(tmp_path / "a")
    for folder in ("b", "c") if workload == "gpt_tokens" else ("b",):
        resumed = _weights(tmp_path / folder)
        assert reference.keys() == resumed.keys()
        assert all(torch.equal(reference[k], resumed[k]) for k in reference), folder
    result = json.loads((tmp_path / "b" / "result.json").read_text())
    assert result["world_size"] == 2 and result["attempts"] == 2 and result["samples_per_s"] > 0
    assert result["samples_per_s_per_device"] == pytest.approx(result["samples_per_s"] / 2)
    ckpt = torch.load(tmp_path / "b" / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng_ranks"]) == 2
    assert not torch.equal(ckpt["rng_ranks"][0]["torch"], ckpt["rng_ranks"][1]["torch"])  # own streams per rank
    history = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    stopped_at = {"gpt_tokens": 16, "cifar10_resnet": 8}[workload]  # the poll (every 8 steps) after the request
    assert [r["step"] for r in history if r.get("event") == "preempted"] == [stopped_at]


def test_ranks_take_disjoint_shards_of_each_global_batch():
    index = torch.arange(10)
    shards = [ddp.shard(index, ddp.Dist(rank=r, world=3)) for r in range(3)]
    assert sorted(torch.cat(shards).tolist()) == list(range(10))
    assert ddp.shard(index, ddp.Dist()).tolist() == list(range(10))


def test_torchrun_launch_writes_one_result_from_rank_0(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "training_scripts.gpt_tokens", "--dry-run", "--device=cpu", f"--output={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world_size"] == 2 and result["status"] == "complete"
    metric_lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(metric_lines) == len((tmp_path / "metrics.jsonl").read_text().splitlines())  # rank 0 alone prints
