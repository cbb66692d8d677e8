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

from training_scripts import ddp
from training_scripts.config import ConfigError, TrainConfig, parse_overrides
from training_scripts.machine import cpu_model
from training_scripts.storage import Location, open_location
from training_scripts.throughput import loop_throughput

EXIT_INPUT_ERROR = 2
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: checkpointed on request (spot notice / SIGTERM); relaunch to resume
STOP_POLL_STEPS = 8  # under DDP, steps between polls of the stop flag (an all-reduce over gloo)
# The numbers `fit` puts in metric lines besides the task's evaluate() figures (and tokens_per_s for sequence
# tasks); mfu only when the peak is known. A workload's METRICS (what it emits) is these plus its own.
LOOP_METRICS = ("step", "epoch", "loss", "samples_per_s", "sec_per_step", "interval_s", "train_seconds", "mfu")


class Preempted(Exception):
    """Raised after the checkpoint is written when a stop was requested."""


# ----------------------------------------------------------------------------- environment
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    TrainConfig.BOUNDS["device"].check("device", name)  # auto | cpu | cuda | cuda:N, as every config
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
        # the GPUs this machine has: a run resumed on a smaller type (a fallback) restores those, not all saved
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


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
    A checkpoint that does not load (corrupt, truncated, or not tensors-only), or loads but does not fit
    (`fits` raises: `{}`, another workload's or another size's state), is moved aside to
    `corrupt-<n>/latest.pt` and training starts afresh, with a warning, instead of failing every attempt."""

    NAME = "latest.pt"

    def __init__(self, location: Location) -> None:
        self.location = location

    def save(self, state: dict) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.location.write_bytes(self.NAME, buffer.getvalue())

    def load(self, fits=None) -> dict | None:
        """The checkpoint, or None; `fits(saved)` raises when a loaded checkpoint is not this run's kind."""
        data = self.location.read_bytes(self.NAME)
        if data is None:
            return None
        try:
            saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            if fits is not None:
                fits(saved)
            return saved
        except Exception as error:  # noqa: BLE001 - any failure to load or fit is the same: quarantine, start afresh
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


def checkpoint_fits(model: nn.Module, optimizer, keys: tuple[str, ...]):
    """A `fits` for Checkpointer.load: the checkpoint is a mapping with `keys` (and `model`, `optimizer`,
    `config`), whose model state has this model's names and shapes and whose optimizer has its groups' sizes.
    Checked before anything is applied, so a misfit leaves the fresh model and optimizer untouched."""
    def fits(saved) -> None:
        if not isinstance(saved, dict):
            raise ValueError(f"it holds a {type(saved).__name__}, not a checkpoint")
        missing = [k for k in ("model", "optimizer", "config", *keys) if k not in saved]
        if missing:
            raise ValueError(f"it is not this workload's checkpoint (no {', '.join(missing[:4])})")
        state, expected = saved["model"], {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if not isinstance(state, dict) or {k: tuple(getattr(v, "shape", ("?",))) for k, v in state.items()} != expected:
            raise ValueError("its model state does not fit this model (another workload's, or another size)")
        groups = saved["optimizer"].get("param_groups") if isinstance(saved["optimizer"], dict) else None
        if (not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups)
                or [len(g.get("params") or ()) for g in groups] != [len(g["params"]) for g in optimizer.param_groups]):
            raise ValueError("its optimizer state does not fit this model's parameters")
        if not isinstance(saved["config"], dict):
            raise ValueError("its config is not a mapping")
    return fits


# Settings that may change between a run and its resumption (where it writes, how long it runs).
RESUMABLE_CHANGES = {"output", "checkpoint", "device", "epochs", "max_steps", "log_every", "checkpoint_every",
                     "compile", "dry_run", "channels_last", "data_placement"}


def check_resumable(saved_config: dict, config, where: str) -> None:
    current = dataclasses.asdict(config)
    defaults = {f.name: f.default for f in dataclasses.fields(config)}  # settings added since the checkpoint
    changed = sorted(k for k in current
                     if k not in RESUMABLE_CHANGES and saved_config.get(k, defaults[k]) != current[k])
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
    """Forward + backward FLOPs of one batch, per sample (torch's FlopCounterMode). RNG and buffers
    (BatchNorm running statistics) untouched."""
    from torch.utils.flop_counter import FlopCounterMode

    buffers = {name: b.clone() for name, b in model.named_buffers()}
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        counter = FlopCounterMode(display=False)
        with counter:
            loss_fn(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    return counter.get_total_flops() / max(1, x.shape[0])


# ----------------------------------------------------------------------------- precision and peak
PEAK_TFLOPS_VAR = "TRAINFLEET_PEAK_TFLOPS"  # JSON set by the agent from the catalog (see core/contract.py)
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def has_bf16_tensor_cores(device: torch.device) -> bool:
    """Ampere (sm80) and newer. `torch.cuda.is_bf16_supported()` also says yes on a T4 or V100, where bf16
    is emulated and slower than fp32."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype `--amp` gives on this device, or None (fp32)."""
    if not config.amp:
        return None
    if device.type == "cuda":
        if config.amp_dtype == "bf16" and not has_bf16_tensor_cores(device):
            name = torch.cuda.get_device_name(device)
            raise ConfigError(f"--amp_dtype=bf16: {name} has no bf16 tensor cores (Ampere or newer); use fp16 or auto")
        if config.amp_dtype == "auto":
            return torch.bfloat16 if has_bf16_tensor_cores(device) else torch.float16
        return _DTYPES[config.amp_dtype]
    return None if config.amp_dtype == "auto" else _DTYPES[config.amp_dtype]  # CPU: only when named


def precision_name(dtype: torch.dtype | None) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def fp32_runs_as_tf32(device: torch.device, model: nn.Module) -> bool:
    """Whether PyTorch will run this model's fp32 matmuls or convolutions on TF32 tensor cores: Ampere (sm80)
    and newer, with TF32 allowed for matmuls (`allow_tf32`, or float32 matmul precision "high"/"medium") or,
    for a model with convolutions, for cuDNN (`torch.backends.cudnn.allow_tf32`, True by default)."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 0):
        return False
    matmul = torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    convolutions = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
    return matmul or (convolutions and torch.backends.cudnn.allow_tf32)


def run_precision(dtype: torch.dtype | None, device: torch.device, model: nn.Module) -> str:
    """The precision that actually runs: bf16 / fp16 under autocast, else tf32 or fp32 (see fp32_runs_as_tf32)."""
    if dtype is None and fp32_runs_as_tf32(device, model):
        return "tf32"
    return precision_name(dtype)


def peak_tflops(device: torch.device, precision: str, world: int = 1, env=os.environ) -> float | None:
    """The peak FLOP/s (in TFLOP/s) of the devices this run uses at its precision, from
    TRAINFLEET_PEAK_TFLOPS = {"device": "cuda", "gpu_count": n, "fp32": .., "tf32": .., "fp16": .., "bf16": ..}
    (catalog totals over the instance's GPUs; dense). None when unknown: MFU is then omitted, never guessed
    (a tf32 run is never measured against the fp32 peak). bf16 dense equals fp16 dense on Ampere and newer,
    so a missing bf16 figure is the fp16 one there."""
    text = env.get(PEAK_TFLOPS_VAR)
    if not text:
        return None
    try:
        peaks = json.loads(text)
        if not isinstance(peaks, dict):
            raise ValueError
    except ValueError:
        raise ConfigError(f"{PEAK_TFLOPS_VAR}={text[:80]!r}: expected a JSON object of TFLOP/s by precision") from None
    if peaks.get("device", "cuda") != device.type:
        return None  # a GPU type's peak says nothing about a run on its CPU
    value = peaks.get(precision)
    if value is None and precision == "bf16" and has_bf16_tensor_cores(device):
        value = peaks.get("fp16")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return None
    count = peaks.get("gpu_count")
    if device.type == "cuda" and isinstance(count, int) and count > 0:
        value = value * min(world, count) / count  # the GPUs this run uses, not the whole instance's
    return float(value)


# ----------------------------------------------------------------------------- supervised loop
@dataclass
class TensorData:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor

    def to(self, device: torch.device) -> "TensorData":
        return TensorData(*(t.to(device) for t in (self.train_x, self.train_y, self.val_x, self.val_y)))

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.train_x, self.train_y, self.val_x, self.val_y))


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
    optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None  # default: AdamW(learning_rate, weight_decay)
    lr_schedule: Callable[[float], float] | None = None  # lr multiplier at a (fractional) epoch: a pure function
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None  # train batches, on the device, global RNG
    flops_per_sample: float | None = None   # analytic count (e.g. nanoGPT's); else torch's FlopCounterMode
    tokens_per_sample: int | None = None    # sequence models: tokens/s is logged too
    target: float | None = None             # report the training seconds until the primary metric first reaches it
    info: dict = field(default_factory=dict)  # extra result.json fields, e.g. {"data": "synthetic"}


class Batches:
    """Training batches by index. Device-resident data is indexed where it lies; host-resident data (too
    big for the device, or --data_placement=host) is gathered on the host into one of two pinned staging
    buffers and copied with non_blocking=True on a copy stream of its own; the loop `prefetch`es the next
    batch as soon as a step is queued, so its copy overlaps that step instead of waiting behind it."""

    def __init__(self, data: TensorData, device: torch.device, resident: bool, batch: int) -> None:
        self.device, self.resident = device, resident
        self.pinned = not resident and device.type == "cuda"
        self.x, self.y = (data.train_x.to(device), data.train_y.to(device)) if resident else (data.train_x, data.train_y)
        if self.pinned:
            self.slots = [(torch.empty((batch, *self.x.shape[1:]), dtype=self.x.dtype, pin_memory=True),
                           torch.empty((batch, *self.y.shape[1:]), dtype=self.y.dtype, pin_memory=True))
                          for _ in range(2)]
            self.events: list = [None, None]
            self.turn = 0
            self.stream = torch.cuda.Stream(device)
        self.ahead: tuple | None = None  # (key, x, y) of the batch prefetched for step `key`

    @property
    def index_device(self) -> torch.device:
        return self.device if self.resident else torch.device("cpu")

    def prefetch(self, key, index: torch.Tensor) -> None:
        """Start copying the batch of step `key` (host-resident data on a GPU only; elsewhere nothing to overlap)."""
        if self.pinned:
            self.ahead = (key, *self._copy(index))

    def get(self, index: torch.Tensor, key=None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pinned:
            ahead, self.ahead = self.ahead, None
            x, y = ahead[1:] if ahead is not None and key is not None and ahead[0] == key else self._copy(index)
            compute = torch.cuda.current_stream(self.device)
            compute.wait_stream(self.stream)
            x.record_stream(compute)
            y.record_stream(compute)
            return x, y
        if self.resident:
            return self.x.index_select(0, index), self.y.index_select(0, index)
        return self.x.index_select(0, index).to(self.device), self.y.index_select(0, index).to(self.device)

    def _copy(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slot, self.turn = self.turn, 1 - self.turn
        if self.events[slot] is not None:
            self.events[slot].synchronize()  # the copy that last read this buffer has finished
        n = index.shape[0]
        bx, by = (buffer.narrow(0, 0, n) for buffer in self.slots[slot])
        torch.index_select(self.x, 0, index, out=bx)
        torch.index_select(self.y, 0, index, out=by)
        with torch.cuda.stream(self.stream):
            x, y = bx.to(self.device, non_blocking=True), by.to(self.device, non_blocking=True)
            self.events[slot] = torch.cuda.Event()
            self.events[slot].record(self.stream)
        return x, y


def choose_placement(config: TrainConfig, data: TensorData, device: torch.device) -> bool:
    """True: keep the training set on the device. `auto` does so unless it needs over half the free memory."""
    if config.data_placement != "auto" or device.type != "cuda":
        return config.data_placement != "host"
    free, _ = torch.cuda.mem_get_info(device)
    return data.nbytes <= free // 2


def output_locations(config: TrainConfig, workload: str) -> tuple[Location, Location]:
    """--output, else the folder the platform gives: TRAINFLEET_OUTPUT_DIR (a trainfleet run) or
    SM_MODEL_DIR (a SageMaker job), else runs/<workload>; --checkpoint, else TRAINFLEET_CHECKPOINT_DIR
    (restored and synced by the trainfleet agent), else <output>/checkpoints."""
    default = os.environ.get("TRAINFLEET_OUTPUT_DIR") or os.environ.get("SM_MODEL_DIR") or os.path.join("runs", workload)
    output = open_location(config.output or default)
    checkpoint = config.checkpoint or (None if config.output else os.environ.get("TRAINFLEET_CHECKPOINT_DIR"))
    return output, open_location(checkpoint) if checkpoint else output.child("checkpoints")


def fit(config: TrainConfig, task: SupervisedTask, *, should_stop: Callable[[], bool] = lambda: False,
        echo: bool = True, peak: float | None = None) -> dict:
    """Train `task.model` on `task.data`; resume from the latest checkpoint if there is one.

    Under torchrun each rank trains on its shard of every global batch (`batch_size` samples over all
    ranks) with DistributedDataParallel; rank 0 checkpoints, logs and writes the artifacts. `peak`
    (TFLOP/s) overrides TRAINFLEET_PEAK_TFLOPS for MFU."""
    requested = resolve_device(config.device)
    d = ddp.start(requested.type)
    try:
        return _fit(config, task, d, requested, should_stop, echo, peak)
    finally:
        d.close()


def _fit(config: TrainConfig, task: SupervisedTask, d: ddp.Dist, device: torch.device, should_stop, echo: bool,
         peak: float | None) -> dict:
    if d.active and device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
    output, checkpoint_location = output_locations(config, task.name)
    checkpointer = Checkpointer(checkpoint_location)
    amp_dtype = autocast_dtype(config, device)
    precision = run_precision(amp_dtype, device, task.model)
    peak = peak if peak is not None else peak_tflops(device, precision, d.world)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every step has the same shapes (the last partial batch is dropped)
    channels_last = config.channels_last and task.data.train_x.dim() == 4
    model = task.model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    resident = choose_placement(config, task.data, device)
    n_train = task.data.train_x.shape[0]
    batch = min(config.batch_size, n_train)
    if d.active and batch < d.world:
        raise ConfigError(f"--batch_size={batch} is smaller than the {d.world} DDP ranks (it is the global batch)")
    # the last partial batch is dropped (a fresh permutation each epoch, so every sample still takes part): one
    # shape for torch.compile and cuDNN's autotuner, and no rank under DDP is ever left without samples
    steps_per_epoch = n_train // batch
    batches = Batches(task.data, device, resident, batch)
    val_x, val_y = task.data.val_x.to(device), task.data.val_y.to(device)
    if channels_last:
        val_x = val_x.contiguous(memory_format=torch.channels_last)
    eval_data = TensorData(batches.x, batches.y, val_x, val_y)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext

    optimizer = (task.optimizer(model) if task.optimizer else
                 torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay))
    base_lrs = [group["lr"] for group in optimizer.param_groups]  # before a checkpoint overwrites them
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    flops_per_sample = task.flops_per_sample or count_flops_per_sample(
        model, task.loss_fn, *batches.get(torch.arange(min(batch, 8), device=batches.index_device)))
    if d.rank > 0:
        seed_everything(config.seed + 7919 * d.rank)  # each rank its own dropout / augmentation stream

    recorder = RunRecorder(echo=echo and d.main)
    epoch, step_in_epoch, global_step = 0, 0, 0
    best, evals_since_best, train_seconds, attempts = None, 0, 0.0, 1
    fits = checkpoint_fits(model, optimizer, ("scaler", "rng", "epoch", "step_in_epoch", "global_step", "best",
                                              "evals_since_best", "train_seconds", "attempts", "history"))
    saved = checkpointer.load(fits) if d.main else None
    d.barrier()  # rank 0 has moved a corrupt or misfit checkpoint aside before the others look
    if not d.main:
        saved = checkpointer.load(fits)
    if saved is not None:
        check_resumable(saved["config"], config, checkpoint_location.uri)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if saved["scaler"]:  # empty when the checkpoint's run had no scaler (bf16 or fp32; e.g. a fallback to a T4)
            scaler.load_state_dict(saved["scaler"])
        ranks = saved.get("rng_ranks") or [saved["rng"]]
        if len(ranks) == d.world:
            set_rng_state(ranks[d.rank])
        elif d.main:  # another number of ranks: the data position holds, per-rank RNG streams restart
            set_rng_state(saved["rng"])
        epoch, step_in_epoch, global_step = saved["epoch"], saved["step_in_epoch"], saved["global_step"]
        best, evals_since_best = saved["best"], saved["evals_since_best"]
        train_seconds, attempts = saved["train_seconds"], saved["attempts"] + 1
        recorder.history = saved["history"]
        note = {} if saved.get("world_size", 1) == d.world else {"world_size_was": saved.get("world_size", 1)}
        recorder.log(event="resumed", step=global_step, epoch=epoch, attempt=attempts, **note)

    train_model = nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None) if d.active else model

    def forward_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast():
            return task.loss_fn(train_model(x), y)

    step_loss = compiled(forward_loss, config, device)  # the loss inside the compiled graph too

    def save_checkpoint() -> None:
        rngs = d.gather(rng_state())
        if d.main:
            checkpointer.save({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "rng": rngs[0], "rng_ranks": rngs if d.active else None, "world_size": d.world,
                "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
                "best": best, "evals_since_best": evals_since_best, "train_seconds": train_seconds,
                "attempts": attempts, "history": recorder.history, "config": dataclasses.asdict(config),
            })

    def evaluate() -> dict | None:
        """Rank 0 evaluates; every rank gets its figures (so early stopping agrees everywhere)."""
        metrics = None
        if d.main:
            with autocast():
                metrics = task.evaluate(model, eval_data)
        return d.broadcast(metrics)

    def untimed(action: Callable[[], None]) -> float:
        """Run `action` (a checkpoint save) and return the seconds it took, to keep out of throughput intervals;
        the device work queued before it is finished first, so that it stays in the interval it belongs to."""
        synchronize(device)
        start = time.perf_counter()
        action()
        return time.perf_counter() - start

    def interval_record(now: float, start: float, samples: int, steps: int, loss: torch.Tensor) -> dict:
        seconds = now - start
        record = dict(step=global_step, epoch=epoch, loss=round(loss.item(), 6),
                      samples_per_s=round(samples / seconds, 2), sec_per_step=round(seconds / steps, 6),
                      interval_s=round(seconds, 6), train_seconds=round(train_seconds, 4))
        if task.tokens_per_sample:
            record["tokens_per_s"] = round(samples * task.tokens_per_sample / seconds, 1)
        if peak:
            record["mfu"] = round(flops_per_sample * samples / seconds / (peak * 1e12), 5)
        return record

    stopped_early = False
    done = config.max_steps and global_step >= config.max_steps
    while epoch < config.epochs and not done and not stopped_early:
        order = torch.randperm(n_train, generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
        order = order.to(batches.index_device)
        model.train()
        synchronize(device)
        interval_start, interval_samples, interval_steps = time.perf_counter(), 0, 0
        while step_in_epoch < steps_per_epoch:
            global_index = order[step_in_epoch * batch:(step_in_epoch + 1) * batch]
            x, y = batches.get(ddp.shard(global_index, d), key=(epoch, step_in_epoch))
            if task.augment:
                with torch.no_grad():
                    x = task.augment(x)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if task.lr_schedule:
                scale = task.lr_schedule(global_step / steps_per_epoch)
                for group, base in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = base * scale
            loss = step_loss(x, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if step_in_epoch + 1 < steps_per_epoch:  # the next batch's copy overlaps this step
                ahead = order[(step_in_epoch + 1) * batch:(step_in_epoch + 2) * batch]
                batches.prefetch((epoch, step_in_epoch + 1), ddp.shard(ahead, d))
            step_in_epoch += 1
            global_step += 1
            interval_samples += global_index.shape[0]
            interval_steps += 1
            if global_step % config.log_every == 0:
                synchronize(device)
                now = time.perf_counter()
                train_seconds += now - interval_start
                recorder.log(**interval_record(now, interval_start, interval_samples, interval_steps, loss))
                interval_start, interval_samples, interval_steps = time.perf_counter(), 0, 0
            if global_step % config.checkpoint_every == 0:
                interval_start += untimed(save_checkpoint)
            # under DDP the stop flag is a collective: polled every STOP_POLL_STEPS steps, not every step
            if (not d.active or global_step % STOP_POLL_STEPS == 0) and d.any(should_stop()):
                recorder.log(event="preempted", step=global_step, epoch=epoch)
                save_checkpoint()
                d.barrier()  # no rank exits (and torchrun stops the others) before rank 0's checkpoint is written
                raise Preempted(f"stopped at step {global_step}; checkpoint saved")
            if config.max_steps and global_step >= config.max_steps:
                done = True
                break
        synchronize(device)
        train_seconds += time.perf_counter() - interval_start
        metrics = evaluate()
        value = metrics[task.primary_metric]
        improved = best is None or (value > best if task.higher_is_better else value < best)
        best, evals_since_best = (value, 0) if improved else (best, evals_since_best + 1)
        recorder.log(step=global_step, epoch=epoch, train_seconds=round(train_seconds, 4),
                     **{k: round(v, 6) for k, v in metrics.items()})
        stopped_early = bool(config.patience) and evals_since_best >= config.patience
        if not done:
            epoch, step_in_epoch = epoch + 1, 0
        save_checkpoint()

    final = evaluate()
    if not d.main:
        return {"status": "complete", "rank": d.rank}
    final = {**final, "steps": global_step, "epochs_completed": epoch,
             "best_" + task.primary_metric: best, "stopped_early": stopped_early}
    samples_per_s, _ = loop_throughput(recorder.history)
    info = {
        "workload": task.name, "primary_metric": task.primary_metric, "higher_is_better": task.higher_is_better,
        "train_seconds": train_seconds, "attempts": attempts, "train_flops_per_sample": flops_per_sample,
        "precision": precision, "compiled": wants_compile(config, device),
        "channels_last": channels_last, "data_placement": "device" if resident else "host",
        "world_size": d.world, "samples_per_s": samples_per_s,
        "samples_per_s_per_device": samples_per_s / d.world if samples_per_s else None,
        "peak_tflops": peak, "mfu": flops_per_sample * samples_per_s / (peak * 1e12) if peak and samples_per_s else None,
        "samples_seen": global_step * batch, "fingerprint": fingerprint(device),
        **({"tokens_per_s": samples_per_s * task.tokens_per_sample}
           if task.tokens_per_sample and samples_per_s else {}),
        **task.info,
    }
    if task.target is not None:
        reached = [r["train_seconds"] for r in recorder.history if task.primary_metric in r and "train_seconds" in r
                   and (r[task.primary_metric] >= task.target if task.higher_is_better
                        else r[task.primary_metric] <= task.target)]
        info.update(target={"metric": task.primary_metric, "value": task.target},
                    time_to_target_s=reached[0] if reached else None)
    extra = task.extra_artifacts(model, eval_data) if task.extra_artifacts else None
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return write_artifacts(output, config, model_state=state, recorder=recorder, final=final, extra=extra, info=info)


def wants_compile(config: TrainConfig, device: torch.device) -> bool:
    """--compile applies on GPUs (on a CPU it would only add minutes of compilation to a smoke run)."""
    return bool(config.compile) and device.type == "cuda"


def compiled(fn: Callable, config: TrainConfig, device: torch.device) -> Callable:
    """`fn` (a module or a function of tensors) under torch.compile when --compile applies; shared by the loop and
    bench_loop's ceiling, so both run the same kind of graph."""
    return torch.compile(fn) if wants_compile(config, device) else fn


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
        predicted = torch.cat([model(data.val_x[i:i + 1024]).argmax(dim=1).cpu()  # chunks: bounded memory
                               for i in range(0, data.val_x.shape[0], 1024)])
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
