"""Benchmark: the shared loop against a pure-compute ceiling and a conventional DataLoader loop.

    python -m training_scripts.bench_loop                  # every supervised workload, CPU (GPU workloads scaled down)
    python -m training_scripts.bench_loop --steps=400 --device=cuda   # full-size GPU workloads, peak from the catalog
    python -m training_scripts.bench_loop --workloads=gpt_tokens --device=cuda --amp --peak-tflops=989

For each workload, on the same machine, same model, batch size and optimizer:
  * loop        - `training_scripts.loop.fit` as users run it (device-resident data, permutation
                  batches, metric logging, checkpoints to a local temp dir), steady-state samples/s
                  after its first logged interval;
  * ceiling     - forward/backward/step on one pre-staged batch: no data handling at all;
  * conventional- a map-style `Dataset` returning one converted sample at a time, batched by
                  `DataLoader(shuffle=True)` (the pattern of most PyTorch tutorials).
cifar10_resnet and gpt_tokens run at full size on a GPU and scaled down on a CPU (CPU_SIZES); their loop
includes the per-batch augmentation (cifar) the ceiling leaves out, and they have no conventional
variant (the ceiling is their reference). With --amp and channels-last (cifar's default) the ceiling
uses the same autocast and memory format as the loop. On a GPU, MFU is printed against the peak of the
GPU's precision: --peak-tflops, else the catalog's figure for the GPU's name (per GPU).
Each variant warms up first; timings synchronise the device; the three are measured in interleaved
rounds and the best of each is printed (as timeit does: on a shared machine, noise only slows a run). Targets: loop >= 0.9 x ceiling and
>= 3 x conventional on CPU. Note that loop <= ceiling, so loop/conventional can never exceed
ceiling/conventional: where compute dominates (the CNN on a CPU) no data path can reach 3x.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from training_scripts.throughput import loop_throughput
from training_scripts import cifar10_resnet, cnn_digits, gpt_tokens, tabular_mlp
from training_scripts.config import ConfigError
from training_scripts.loop import (
    autocast_dtype, compiled, count_flops_per_sample, fingerprint, fit, resolve_device, run_precision, synchronize,
    wants_compile,
)

CATALOG = Path(__file__).resolve().parents[1] / "instance_benchmarks" / "catalog" / "data" / "catalog.json"  # data only


def _step(forward_loss, optimizer, x, y, scaler=None) -> torch.Tensor:
    loss = forward_loss(x, y)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss


def ceiling(task, config, device, steps: int, warmup: int) -> float:
    """Forward/backward/step on one pre-staged batch, with the loop's optimizer, autocast, memory format and,
    with --compile, the loop's compiled forward and loss (loop.compiled)."""
    model = copy.deepcopy(task.model).to(device).train()
    channels_last = config.channels_last and task.data.train_x.dim() == 4
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = (task.optimizer(model) if task.optimizer else
                 torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay))
    dtype = autocast_dtype(config, device)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None

    def forward_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast():
            return task.loss_fn(model(x), y)

    step_loss = compiled(forward_loss, config, device)
    x = task.data.train_x[: config.batch_size].to(device)
    y = task.data.train_y[: config.batch_size].to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for _ in range(warmup):
        _step(step_loss, optimizer, x, y, scaler)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        _step(step_loss, optimizer, x, y, scaler)
    synchronize(device)
    return steps * x.shape[0] / (time.perf_counter() - start)


class PerSampleDataset(Dataset):
    """What most tutorials do: keep raw arrays, convert and normalise one sample per __getitem__."""

    def __init__(self, x: np.ndarray, y: np.ndarray, mean: float, std: float) -> None:
        self.x, self.y, self.mean, self.std = x, y, mean, std

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return torch.tensor((self.x[i] - self.mean) / self.std, dtype=torch.float32), torch.tensor(self.y[i])


def conventional(task, config, device, steps: int, warmup: int) -> float:
    model = copy.deepcopy(task.model).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    raw_x = task.data.train_x.numpy() * 2.0 + 1.0  # undo the workload's normalisation: raw inputs
    dataset = PerSampleDataset(raw_x, task.data.train_y.numpy(), 1.0, 2.0)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, num_workers=0,
                        generator=torch.Generator().manual_seed(0))

    def batches():
        while True:
            yield from loader

    stream = batches()
    forward_loss = lambda x, y: task.loss_fn(model(x), y)  # noqa: E731
    for _ in range(warmup):
        x, y = next(stream)
        _step(forward_loss, optimizer, x.to(device), y.to(device))
    synchronize(device)
    start, samples = time.perf_counter(), 0
    for _ in range(steps):
        x, y = next(stream)
        _step(forward_loss, optimizer, x.to(device), y.to(device))
        samples += x.shape[0]
    synchronize(device)
    return samples / (time.perf_counter() - start)


def shared_loop(module, config, steps: int, peak: float | None = None) -> float:
    with tempfile.TemporaryDirectory() as out:
        run_config = replace(config, output=out, epochs=10_000, max_steps=steps, patience=0, log_every=20)
        fit(run_config, module.build_task(run_config), echo=False, peak=peak)
        lines = [json.loads(line) for line in open(f"{out}/metrics.jsonl")]
    return loop_throughput(lines)[0]


WORKLOADS = {"tabular_mlp": tabular_mlp, "cnn_digits": cnn_digits, "cifar10_resnet": cifar10_resnet,
             "gpt_tokens": gpt_tokens}
CONVENTIONAL = {"tabular_mlp", "cnn_digits"}  # float features whose normalisation a per-sample Dataset can redo
# Sizes for a CPU, where the full-size GPU workloads would take minutes per step. Synthetic data: offline.
CPU_SIZES = {
    "cifar10_resnet": dict(width=16, batch_size=64, synthetic_size=2000, data="synthetic"),
    "gpt_tokens": dict(n_layer=2, n_head=4, n_embd=128, block_size=64, batch_size=16, data="synthetic",
                       synthetic_tokens=100_000),
}
GPU_SIZES = {"cifar10_resnet": dict(data="synthetic"), "gpt_tokens": dict(data="synthetic")}


def catalog_peak(device, precision: str, path: Path = CATALOG) -> tuple[float | None, str]:
    """Per-GPU dense peak TFLOP/s of this GPU at `precision` (fp32 / tf32 / bf16 / fp16) from the catalog's
    `gpu_peaks`, by the GPU model in the device's name (the longest that matches: L40S before L4)."""
    if device.type != "cuda":
        return None, "no peak on a CPU"
    name = torch.cuda.get_device_name(device)
    try:
        table = json.loads(path.read_text())["gpu_peaks"]
    except (OSError, ValueError, KeyError):
        return None, f"no gpu_peaks in a catalog at {path}"
    for model in sorted((m for m, v in table.items() if isinstance(v, dict)), key=len, reverse=True):
        if model.lower() in name.lower():
            value = table[model].get(precision)
            if value is None:
                return None, f"{name} has no {precision} tensor cores"
            return float(value), f"catalog {model} {precision} dense"
    return None, f"{name} is not in the catalog"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repetitions; the best of each is reported")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated; default: all of them")
    parser.add_argument("--amp", action="store_true", help="mixed precision (bf16 on Ampere and newer, else fp16)")
    parser.add_argument("--compile", action="store_true", help="torch.compile in the loop (GPU)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="per-device peak for MFU (default: catalog)")
    args = parser.parse_args()
    names = [n for n in args.workloads.split(",") if n]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or args.steps <= 0 or args.warmup < 0 or args.rounds <= 0:
        parser.exit(2, f"error: unknown workloads {unknown} (known: {', '.join(WORKLOADS)}) or a non-positive count\n"
                    if unknown else "error: --steps and --rounds must be positive, --warmup not negative\n")
    try:
        device = resolve_device(args.device)
    except ConfigError as error:
        parser.exit(2, f"error: {error}\n")
    print(json.dumps({"fingerprint": fingerprint(device)}))
    print(HEADER)
    for name in names:
        print(row(measure(name, device, steps=args.steps, warmup=args.warmup, rounds=args.rounds, amp=args.amp,
                          compile=args.compile, peak_tflops=args.peak_tflops)), flush=True)


HEADER = (f"{'workload':<16}{'loop':>12}{'ceiling':>12}{'conventional':>14}{'loop/ceil':>11}{'loop/conv':>11}"
          f"{'mfu':>8}  (samples/s)")


def measure(name: str, device: torch.device, *, steps: int, warmup: int, rounds: int, amp: bool = False,
            compile: bool = False, peak_tflops: float | None = None) -> dict:
    """One workload's figures: the best samples/s of loop, ceiling (and conventional) over `rounds`
    interleaved rounds, loop/ceiling, and MFU against the peak of the precision that runs."""
    module = WORKLOADS[name]
    sizes = (CPU_SIZES if device.type == "cpu" else GPU_SIZES).get(name, {})
    config = replace(module.Config(), device=str(device), amp=amp or module.Config().amp, compile=compile, **sizes)
    task = module.build_task(config)
    precision = run_precision(autocast_dtype(config, device), device, task.model)
    peak, peak_source = (peak_tflops, "given") if peak_tflops else catalog_peak(device, precision)
    rates = {"loop": [], "ceiling": [], "conventional": []}
    for _ in range(rounds):  # interleaved so machine noise hits all three alike
        rates["loop"].append(shared_loop(module, config, steps + 20, peak))
        rates["ceiling"].append(ceiling(task, config, device, steps, warmup))
        if name in CONVENTIONAL:
            rates["conventional"].append(conventional(task, config, device, steps, warmup))
    loop_rate, ceiling_rate = max(rates["loop"]), max(rates["ceiling"])
    conventional_rate = max(rates["conventional"]) if rates["conventional"] else None
    flops = task.flops_per_sample or count_flops_per_sample(
        copy.deepcopy(task.model).to(device), task.loss_fn, task.data.train_x[:8].to(device),
        task.data.train_y[:8].to(device))
    return {"workload": name, "loop": loop_rate, "ceiling": ceiling_rate, "conventional": conventional_rate,
            "loop_over_ceiling": loop_rate / ceiling_rate, "compiled": wants_compile(config, device),
            "precision": precision, "peak_tflops": peak, "peak_source": peak_source,
            "mfu": flops * loop_rate / (peak * 1e12) if peak else None, "train_flops_per_sample": flops}


def row(figures: dict) -> str:
    """One line of the printed table."""
    conventional_rate, loop_rate = figures["conventional"], figures["loop"]
    mfu = f"{figures['mfu']:>8.1%}" if figures["mfu"] else f"{'-':>8}"
    conv_rate, conv_ratio = ((f"{conventional_rate:>14.0f}", f"{loop_rate / conventional_rate:>11.2f}")
                             if conventional_rate else (f"{'-':>14}", f"{'-':>11}"))
    return (f"{figures['workload']:<16}{loop_rate:>12.0f}{figures['ceiling']:>12.0f}{conv_rate}"
            f"{figures['loop_over_ceiling']:>11.2f}{conv_ratio}{mfu}  {figures['precision']}")

if __name__ == "__main__":
    main()
