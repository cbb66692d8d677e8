"""The shared training loop: one readable loop over device-resident tensors, with checkpoint/resume.

Data small enough to fit stays on the device and is batched by indexing with a per-epoch permutation
(seeded by `seed` and the epoch), so the data position is just (epoch, step) and a resumed run sees
exactly the batches an uninterrupted one would. A checkpoint holds model, optimizer, scaler, every
RNG, the data position, early-stopping state and the metric history; it is written atomically.

Metrics go to stdout as JSON lines and into `metrics.jsonl`. A run is complete when `result.json`
(written last, with SHA-256 checksums of every artifact) exists in its output location.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import platform
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from training_scripts.config import ConfigError, TrainConfig, parse_overrides
from training_scripts.machine import cpu_model
from training_scripts.storage import Location, open_location

EXIT_INPUT_ERROR = 2
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: checkpointed on request (spot notice / SIGTERM); relaunch to resume


class Preempted(Exception):
    """Raised after the checkpoint is written when a stop was requested."""


# ----------------------------------------------------------------------------- environment
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device={name}: CUDA is not available on this machine")
    return device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rng_state() -> dict:
    """Every generator's state as tensors and plain Python values (checkpoints load with weights_only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (name, keys.tolist(), int(pos), int(has_gauss), float(cached))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StopFlag:
    """Set by SIGTERM / SIGUSR1 (the agent's spot-interruption notice); polled at step boundaries."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> "StopFlag":
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __call__(self) -> bool:
        return self.requested


# ----------------------------------------------------------------------------- checkpoints
class Checkpointer:
    """`latest.pt` in a location; every save replaces it atomically.

    Checkpoints hold tensors and plain Python values only and load with `weights_only=True`: whoever can
    write the checkpoint folder (the bucket) cannot run code in the next attempt by planting a pickle.
    A checkpoint that does not load (corrupt, truncated, or not tensors-only) is moved aside to
    `corrupt-<n>/latest.pt` and training starts afresh, with a warning, instead of failing every attempt."""

    NAME = "latest.pt"

    def __init__(self, location: Location) -> None:
        self.location = location

    def save(self, state: dict) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.location.write_bytes(self.NAME, buffer.getvalue())

    def load(self) -> dict | None:
        data = self.location.read_bytes(self.NAME)
        if data is None:
            return None
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any failure to load is the same: quarantine, start afresh
            taken = {name.split("/", 1)[0] for name in self.location.list("corrupt-")}
            aside = next(f"corrupt-{n}" for n in range(1, len(taken) + 2) if f"corrupt-{n}" not in taken)
            self.location.child(aside).write_bytes(self.NAME, data)
            self.location.delete(self.NAME)
            reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
            print(json.dumps({"event": "checkpoint_quarantined", "moved_to": f"{aside}/{self.NAME}",
                              "reason": reason}), flush=True)
            print(f"warning: checkpoint {self.location.uri}/{self.NAME} did not load ({reason}); moved to "
                  f"{aside}/ and starting afresh", file=sys.stderr, flush=True)
            return None


# Settings that may change between a run and its resumption (where it writes, how long it runs).
RESUMABLE_CHANGES = {"output", "checkpoint", "device", "epochs", "max_steps", "log_every", "checkpoint_every",
                     "compile", "dry_run"}


def check_resumable(saved_config: dict, config, where: str) -> None:
    current = dataclasses.asdict(config)
    changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved_config.get(k) != current[k])
    if changed:
        raise ConfigError(f"checkpoint in {where} was written with different {', '.join(changed)}; "
                          "use another --checkpoint location or the same settings")


# ----------------------------------------------------------------------------- run recording
@dataclass
class RunRecorder:
    """Metric history (kept in checkpoints), echoed to stdout as JSON lines."""

    history: list[dict] = field(default_factory=list)
    echo: bool = True

    def log(self, **record) -> None:
        self.history.append(record)
        if self.echo:
            print(json.dumps(record), flush=True)

    def jsonl(self) -> bytes:
        return "".join(json.dumps(r) + "\n" for r in self.history).encode()


def fingerprint(device: torch.device) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_count=torch.cuda.device_count(),
                    gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
    return info


def write_artifacts(output: Location, config, *, model_state: dict | None, recorder: RunRecorder,
                    final: dict, extra: dict[str, bytes] | None = None, info: dict | None = None) -> dict:
    """Write model, config, metrics and extras, then `result.json` (last) listing their SHA-256."""
    config_dict = dataclasses.asdict(config)
    files: dict[str, bytes] = {
        "config.json": json.dumps(config_dict, indent=2).encode(),
        "metrics.jsonl": recorder.jsonl(),
        **(extra or {}),
    }
    if model_state is not None:
        buffer = io.BytesIO()
        torch.save({"model": model_state, "config": config_dict}, buffer)
        files["model.pt"] = buffer.getvalue()
    checksums = {name: output.write_bytes(name, data) for name, data in files.items()}
    result = {"status": "complete", "final": final, "artifacts": checksums, "config": config_dict, **(info or {})}
    output.write_bytes("result.json", json.dumps(result, indent=2, default=str).encode())
    return result


def count_flops_per_sample(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> float:
    """Forward + backward FLOPs of one batch, per sample (torch's FlopCounterMode). RNG untouched."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.random.fork_rng(devices=[]):
        counter = FlopCounterMode(display=False)
        with counter:
            loss_fn(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / max(1, x.shape[0])


# ----------------------------------------------------------------------------- supervised loop
@dataclass
class TensorData:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor

    def to(self, device: torch.device) -> "TensorData":
        return TensorData(*(t.to(device) for t in (self.train_x, self.train_y, self.val_x, self.val_y)))


@dataclass
class SupervisedTask:
    """What a workload supplies to `fit`."""

    name: str
    model: nn.Module
    data: TensorData
    loss_fn: Callable
    evaluate: Callable[[nn.Module, TensorData], dict]  # -> {"val_loss": ..., primary_metric: ...}
    primary_metric: str
    higher_is_better: bool
    extra_artifacts: Callable[[nn.Module, TensorData], dict[str, bytes]] | None = None


def output_locations(config: TrainConfig, workload: str) -> tuple[Location, Location]:
    """--output, else the folder the platform gives: TRAINFLEET_OUTPUT_DIR (a trainfleet run) or
    SM_MODEL_DIR (a SageMaker job), else runs/<workload>; --checkpoint, else TRAINFLEET_CHECKPOINT_DIR
    (restored and synced by the trainfleet agent), else <output>/checkpoints."""
    default = os.environ.get("TRAINFLEET_OUTPUT_DIR") or os.environ.get("SM_MODEL_DIR") or os.path.join("runs", workload)
    output = open_location(config.output or default)
    checkpoint = config.checkpoint or (None if config.output else os.environ.get("TRAINFLEET_CHECKPOINT_DIR"))
    return output, open_location(checkpoint) if checkpoint else output.child("checkpoints")


def fit(config: TrainConfig, task: SupervisedTask, *, should_stop: Callable[[], bool] = lambda: False,
        echo: bool = True) -> dict:
    """Train `task.model` on `task.data`; resume from the latest checkpoint if there is one."""
    device = resolve_device(config.device)
    output, checkpoint_location = output_locations(config, task.name)
    checkpointer = Checkpointer(checkpoint_location)
    model = task.model.to(device)
    data = task.data.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    step_model = torch.compile(model) if config.compile and device.type == "cuda" else model

    n_train = data.train_x.shape[0]
    batch = min(config.batch_size, n_train)
    steps_per_epoch = math.ceil(n_train / batch)
    flops_per_sample = count_flops_per_sample(model, task.loss_fn, data.train_x[:batch], data.train_y[:batch])

    recorder = RunRecorder(echo=echo)
    epoch, step_in_epoch, global_step = 0, 0, 0
    best, evals_since_best, train_seconds, attempts = None, 0, 0.0, 1
    saved = checkpointer.load()
    if saved is not None:
        check_resumable(saved["config"], config, checkpoint_location.uri)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
        set_rng_state(saved["rng"])
        epoch, step_in_epoch, global_step = saved["epoch"], saved["step_in_epoch"], saved["global_step"]
        best, evals_since_best = saved["best"], saved["evals_since_best"]
        train_seconds, attempts = saved["train_seconds"], saved["attempts"] + 1
        recorder.history = saved["history"]
        recorder.log(event="resumed", step=global_step, epoch=epoch, attempt=attempts)

    def save_checkpoint() -> None:
        checkpointer.save({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "rng": rng_state(), "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
            "best": best, "evals_since_best": evals_since_best, "train_seconds": train_seconds,
            "attempts": attempts, "history": recorder.history, "config": dataclasses.asdict(config),
        })

    stopped_early = False
    done = config.max_steps and global_step >= config.max_steps
    while epoch < config.epochs and not done and not stopped_early:
        order = torch.randperm(n_train, generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
        order = order.to(device)
        model.train()
        synchronize(device)
        interval_start, interval_samples, interval_steps = time.perf_counter(), 0, 0
        while step_in_epoch < steps_per_epoch:
            index = order[step_in_epoch * batch:(step_in_epoch + 1) * batch]
            x, y = data.train_x.index_select(0, index), data.train_y.index_select(0, index)
            with torch.autocast(device.type, dtype=amp_dtype) if use_amp else contextlib.nullcontext():
                loss = task.loss_fn(step_model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step_in_epoch += 1
            global_step += 1
            interval_samples += index.shape[0]
            interval_steps += 1
            if global_step % config.log_every == 0:
                synchronize(device)
                now = time.perf_counter()
                train_seconds += now - interval_start
                recorder.log(step=global_step, epoch=epoch, loss=round(loss.item(), 6),
                             samples_per_s=round(interval_samples / (now - interval_start), 2),
                             sec_per_step=round((now - interval_start) / interval_steps, 6),
                             interval_s=round(now - interval_start, 6),
                             train_seconds=round(train_seconds, 4))
                interval_start, interval_samples, interval_steps = time.perf_counter(), 0, 0
            if global_step % config.checkpoint_every == 0:
                save_checkpoint()
            if should_stop():
                recorder.log(event="preempted", step=global_step, epoch=epoch)
                save_checkpoint()
                raise Preempted(f"stopped at step {global_step}; checkpoint saved")
            if config.max_steps and global_step >= config.max_steps:
                done = True
                break
        synchronize(device)
        train_seconds += time.perf_counter() - interval_start
        metrics = task.evaluate(model, data)
        value = metrics[task.primary_metric]
        improved = best is None or (value > best if task.higher_is_better else value < best)
        best, evals_since_best = (value, 0) if improved else (best, evals_since_best + 1)
        recorder.log(step=global_step, epoch=epoch, train_seconds=round(train_seconds, 4),
                     **{k: round(v, 6) for k, v in metrics.items()})
        stopped_early = bool(config.patience) and evals_since_best >= config.patience
        if not done:
            epoch, step_in_epoch = epoch + 1, 0
        save_checkpoint()

    final = {**task.evaluate(model, data), "steps": global_step, "epochs_completed": epoch,
             "best_" + task.primary_metric: best, "stopped_early": stopped_early}
    info = {
        "workload": task.name, "primary_metric": task.primary_metric, "higher_is_better": task.higher_is_better,
        "train_seconds": train_seconds, "attempts": attempts, "train_flops_per_sample": flops_per_sample,
        "precision": ("bf16" if amp_dtype == torch.bfloat16 else "fp16") if use_amp else "fp32",
        "samples_seen": global_step * batch, "fingerprint": fingerprint(device),
    }
    extra = task.extra_artifacts(model, data) if task.extra_artifacts else None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return write_artifacts(output, config, model_state=state, recorder=recorder, final=final, extra=extra, info=info)


def run_supervised(config: TrainConfig, build_task: Callable[[TrainConfig], SupervisedTask],
                   should_stop: Callable[[], bool] = lambda: False) -> dict:
    """A supervised workload's `run`: a dry run is one epoch of three steps, each logged."""
    if config.dry_run:
        config = dataclasses.replace(config, epochs=1, max_steps=3, log_every=1)
    return fit(config, build_task(config), should_stop=should_stop)


def main_entry(config_cls, run: Callable, argv: list[str] | None = None) -> int:
    """Parse overrides, run, map outcomes to exit codes (0 done, 2 bad input, 75 preempted)."""
    try:
        config = parse_overrides(config_cls, sys.argv[1:] if argv is None else argv)
        run(config, StopFlag().install())
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except Preempted as stop:
        print(f"preempted: {stop}", file=sys.stderr)
        return EXIT_PREEMPTED
    return 0


def classification_extras(model: nn.Module, data: TensorData, n_classes: int) -> dict[str, bytes]:
    """Confusion matrix on the validation set (rows = true class, columns = predicted)."""
    model.eval()
    with torch.no_grad():
        predicted = model(data.val_x).argmax(dim=1).cpu()
    matrix = torch.zeros(n_classes, n_classes, dtype=torch.long)
    for true, pred in zip(data.val_y.cpu().tolist(), predicted.tolist()):
        matrix[true, pred] += 1
    return {"confusion_matrix.json": json.dumps({"labels": list(range(n_classes)), "matrix": matrix.tolist()}).encode()}


def classification_eval(model: nn.Module, data: TensorData) -> dict:
    model.eval()
    with torch.no_grad():
        logits = model(data.val_x)
        loss = nn.functional.cross_entropy(logits.float(), data.val_y).item()
        accuracy = (logits.argmax(dim=1) == data.val_y).float().mean().item()
    return {"val_loss": loss, "val_accuracy": accuracy}


def mlp(inputs: int, hidden: tuple[int, ...], outputs: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inputs, width), nn.ReLU(), nn.Dropout(dropout)]
        inputs = width
    layers.append(nn.Linear(inputs, outputs))
    return nn.Sequential(*layers)
