"""The first GPU run in one command (issue 29): the loop against its ceiling, ResNet-9 towards 94%, GPT-2's MFU.

    python -m training_scripts.gpu_truth --out=gpu_truth.jsonl                        # one CUDA GPU, 420 s in all
    python -m training_scripts.gpu_truth --device=cpu --smoke --out=/tmp/truth.jsonl  # CPU proof, tiny sizes

Run from the repository root. It needs torch, numpy and this repository's `training_scripts` only: no
project venv, no pip, no network (data is synthetic unless CIFAR-10's archive is already in the cache).
Three parts, each through the workloads' own entry points, scaled to fit `--budget-s`:

  a. bench_loop.measure for cifar10_resnet and gpt_tokens (bf16), eager and with --compile: loop and
     ceiling samples/s, loop/ceiling (target >= 0.9) and MFU;
  b. cifar10_resnet at its recipe (24 epochs, batch 512, bf16, channels-last; eager unless --compile-cifar,
     as its docstring runs it) on 50,000 images: time per epoch, samples/s, and time-to-94%. On synthetic
     images 94% is reached far sooner than on CIFAR-10, so that figure is the loop's, not a CIFAR-10 one;
  c. gpt_tokens at GPT-2 small (its docstring's command: 12 x 768, T=1024, batch 16, vocab 50304, bf16,
     compiled) until its time share is spent: tokens/s and MFU over the steady intervals.

MFU is against the dense peak of the precision that ran, for the GPU found in the catalog's `gpu_peaks`
(an H200 has the H100 SXM's figures), passed as the workloads receive it: TRAINFLEET_PEAK_TFLOPS.
Every figure goes to `--out` as one JSON line; a summary table is printed at the end. Parts b and c stop
at their deadline through the loop's own stop request (a checkpoint, as on a spot notice) and report the
steady intervals they completed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from training_scripts import bench_loop, cifar10_resnet, gpt_tokens
from training_scripts.loop import PEAK_TFLOPS_VAR, Checkpointer, Preempted, autocast_dtype, resolve_device, run_precision
from training_scripts.storage import open_location
from training_scripts.throughput import loop_throughput, steady_intervals

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
GPT2_SMALL = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, batch_size=16, vocab_size=50304, dropout=0.0)
SMOKE = {  # --smoke: sizes a CPU runs in seconds
    "cifar10_resnet": dict(width=16, batch_size=64, synthetic_size=512, epochs=1, log_every=2),
    "gpt_tokens": dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=8, vocab_size=256,
                       synthetic_tokens=20_000, epochs=1, log_every=2),
}


class Report:
    """Figures as JSON lines in `--out` (each flushed at once, so a killed run keeps what it measured)."""

    def __init__(self, path: Path) -> None:
        self.handle, self.rows = path.open("w"), []

    def write(self, part: str, **figures) -> None:
        record = {"part": part, **figures}
        self.rows.append(record)
        self.handle.write(json.dumps(record, default=str) + "\n")
        self.handle.flush()


def machine(device: torch.device) -> dict:
    """uptime-style load and the GPU's name as nvidia-smi gives it."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        smi = None
    return {"load_average": load, "nvidia_smi": smi, "device": str(device), "torch": torch.__version__,
            "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def set_peaks(device: torch.device) -> dict:
    """TRAINFLEET_PEAK_TFLOPS for this GPU from the catalog (per GPU, dense), as the agent sets it."""
    peaks = {p: bench_loop.catalog_peak(device, p)[0] for p in PRECISIONS}
    known = {p: v for p, v in peaks.items() if v}
    if known:
        os.environ[PEAK_TFLOPS_VAR] = json.dumps({"device": "cuda", "gpu_count": 1, **known})
    return peaks


def run_until(module, config, deadline: float) -> tuple[list[dict], dict | None]:
    """Run a workload until it ends or `deadline` (time.monotonic()) passes: (its metric history, result or None)."""
    try:
        result = module.run(config, should_stop=lambda: time.monotonic() > deadline)
    except Preempted:
        saved = Checkpointer(open_location(str(Path(config.output) / "checkpoints"))).load()
        return saved["history"], None
    return [json.loads(line) for line in (Path(config.output) / "metrics.jsonl").read_text().splitlines()], result


def precision(module, config, device: torch.device) -> str:
    """The precision the workload ran at, as the loop decides it (the model built on the meta device: no memory)."""
    with torch.device("meta"):
        model = module.build_model(config)
    return run_precision(autocast_dtype(config, device), device, model)


def steady(history: list[dict], key: str) -> float | None:
    """`key` averaged over the steady intervals (weighted by their length); the warm-up interval excluded."""
    intervals = [r for r in steady_intervals(history) if r.get(key) is not None]
    seconds = sum(r["interval_s"] for r in intervals)
    return sum(r[key] * r["interval_s"] for r in intervals) / seconds if seconds else None


def part_bench(report: Report, device: torch.device, steps: int) -> None:
    for compiled in (False, True):
        for name in ("cifar10_resnet", "gpt_tokens"):
            started = time.monotonic()
            figures = bench_loop.measure(name, device, steps=steps, warmup=max(1, steps // 10), rounds=1, amp=True,
                                         compile=compiled)
            mode = "compiled" if figures["compiled"] else "eager (compile: GPU only)" if compiled else "eager"
            report.write("bench_loop", steps=steps, seconds=round(time.monotonic() - started, 1), mode=mode, **figures)
            print(bench_loop.row(figures), mode, flush=True)


def part_cifar(report: Report, device: torch.device, out: str, deadline: float, smoke: bool, compile: bool) -> None:
    archive = cifar10_resnet.cache_dir() / "cifar10" / "cifar-10-python.tar.gz"
    data = str(archive) if archive.is_file() and not smoke else "synthetic"
    config = replace(cifar10_resnet.Config(), device=str(device), output=out, data=data, compile=compile,
                     checkpoint_every=10**6, **{"synthetic_size": 50_000, **(SMOKE["cifar10_resnet"] if smoke else {})})
    started = time.monotonic()
    history, result = run_until(cifar10_resnet, config, deadline)
    evals = [r for r in history if "test_accuracy" in r]
    samples_per_s, sec_per_step = loop_throughput(history)
    epochs_done = len(evals)
    reached = [r["train_seconds"] for r in evals if r["test_accuracy"] >= config.target_accuracy]
    report.write("cifar10_resnet", data="cifar10" if data != "synthetic" else "synthetic (not a CIFAR-10 figure)",
                 complete=result is not None, epochs_done=epochs_done, epochs_planned=config.epochs,
                 samples_per_s=samples_per_s, sec_per_step=sec_per_step,
                 seconds_per_epoch=evals[-1]["train_seconds"] / epochs_done if epochs_done else None,
                 test_accuracy=evals[-1]["test_accuracy"] if evals else None,
                 time_to_94_s=reached[0] if reached else None, compiled=compile and device.type == "cuda",
                 precision=precision(cifar10_resnet, config, device), mfu=steady(history, "mfu"),
                 wall_s=round(time.monotonic() - started, 1))


def part_gpt(report: Report, device: torch.device, out: str, deadline: float, smoke: bool) -> None:
    sizes = SMOKE["gpt_tokens"] if smoke else dict(GPT2_SMALL, epochs=1000, log_every=10)
    config = replace(gpt_tokens.Config(), device=str(device), output=out, data="synthetic", amp=True,
                     compile=True, checkpoint_every=10**6, **sizes)
    started = time.monotonic()
    history, result = run_until(gpt_tokens, config, deadline)
    samples_per_s, sec_per_step = loop_throughput(history)
    report.write("gpt_tokens", size="smoke" if smoke else "GPT-2 small (124M), T=1024, batch 16",
                 complete=result is not None, steps=max((r.get("step", 0) for r in history), default=0),
                 tokens_per_s=samples_per_s * config.block_size if samples_per_s else None,
                 sec_per_step=sec_per_step, mfu=steady(history, "mfu"), precision=precision(gpt_tokens, config, device),
                 wall_s=round(time.monotonic() - started, 1))


def summary(rows: list[dict]) -> str:
    def fmt(value, spec):  # "-" in the column's width where there is no figure
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return format(value, spec) if number else format("-", spec.split(".")[0])

    lines = [f"{'part':<30}{'samples/s':>12}{'loop/ceil':>11}{'tokens/s':>12}{'mfu':>8}{'to 94% s':>10}  notes"]
    for r in rows:
        if r["part"] == "machine":
            continue
        name = r["part"] + (f" {r['workload']} {r['mode'].split()[0]}" if "workload" in r else "")
        rate = r.get("loop", r.get("samples_per_s"))
        notes = " ".join(str(r[k]) for k in ("precision", "mode", "data", "size") if r.get(k))
        lines.append(f"{name:<30}{fmt(rate, '>12.0f')}{fmt(r.get('loop_over_ceiling'), '>11.2f')}"
                     f"{fmt(r.get('tokens_per_s'), '>12.0f')}{fmt(r.get('mfu'), '>8.1%')}"
                     f"{fmt(r.get('time_to_94_s'), '>10.1f')}  {notes}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget-s", type=float, default=420.0, help="total seconds for the three parts")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per figure")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (a CPU proof that every part runs)")
    parser.add_argument("--compile-cifar", action="store_true", help="part b under torch.compile")
    args = parser.parse_args(argv)
    if not 30 <= args.budget_s <= 86_400:
        parser.exit(2, "error: --budget-s must be between 30 and 86400\n")
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    start = time.monotonic()
    report = Report(args.out)
    report.write("machine", **machine(device), peaks=set_peaks(device), budget_s=args.budget_s, smoke=args.smoke)
    print(json.dumps(report.rows[-1]), flush=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_truth-"))
    try:
        print(bench_loop.HEADER, flush=True)
        part_bench(report, device, steps=5 if args.smoke else max(50, int(args.budget_s / 2)))
        left = args.budget_s - (time.monotonic() - start)
        part_cifar(report, device, str(work / "cifar"), time.monotonic() + 0.45 * left, args.smoke, args.compile_cifar)
        part_gpt(report, device, str(work / "gpt"), start + args.budget_s, args.smoke)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(summary(report.rows))
    print(f"wall {time.monotonic() - start:.0f} s of a {args.budget_s:.0f} s budget; figures in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
