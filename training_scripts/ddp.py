"""DistributedDataParallel plumbing for the shared loop: one process per GPU, started by torchrun.

    torchrun --standalone --nproc_per_node=4 training_scripts/cifar10_resnet.py   # what the agent runs on a 4-GPU type
    python -m torch.distributed.run --standalone --nproc_per_node=2 -m training_scripts.tabular_mlp --device=cpu

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them (or with WORLD_SIZE=1) everything here is a
no-op and the loop runs as one plain process. The process group is NCCL on GPUs and gloo on the CPU; small
host-side collectives (the stop flag, metric dicts, RNG states) always go over gloo, so they never wait
for the GPU's queue. Rank 0 writes checkpoints, metrics and artifacts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from training_scripts.config import ConfigError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False       # this module initialised the process group (and so destroys it)
    host_group: object = None      # gloo group for host-side collectives

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on any (a stop requested by one rank stops all, together)."""
        if not self.active:
            return flag
        value = torch.tensor([1 if flag else 0], dtype=torch.int32)
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.host_group)
        return bool(value.item())

    def broadcast(self, obj):
        """Rank 0's value of `obj` on every rank (picklable, small)."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.host_group)
        return box[0]

    def gather(self, obj) -> list | None:
        """Every rank's `obj`, in rank order, on rank 0 (None elsewhere)."""
        if not self.active:
            return [obj]
        out = [None] * self.world if self.main else None
        dist.gather_object(obj, out, dst=0, group=self.host_group)
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier(group=self.host_group)

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r}: expected an integer (set by torchrun)") from None


def start(device_type: str) -> Dist:
    """Join the process group torchrun describes (or none); `device_type` picks NCCL or gloo."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world or local_rank < 0:
        raise ConfigError(f"RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local_rank}: not a valid process layout")
    if world == 1:
        return Dist()
    if device_type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} GPU(s): "
                              "use --nproc_per_node at most the GPU count")
        torch.cuda.set_device(local_rank)
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device_type == "cuda" else "gloo"
        device_id = torch.device("cuda", local_rank) if device_type == "cuda" else None
        dist.init_process_group(backend=backend, rank=rank, world_size=world, device_id=device_id)
    host_group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    return Dist(rank=rank, world=world, local_rank=local_rank, owns_group=owns, host_group=host_group)


def shard(global_index: torch.Tensor, d: Dist) -> torch.Tensor:
    """This rank's part of one global batch: every world-th sample from its rank on. The global batch
    depends only on (seed, epoch, step), so the data position survives any restart, even on another
    number of GPUs."""
    return global_index[d.rank::d.world] if d.active else global_index
