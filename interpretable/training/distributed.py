"""DistributedDataParallel plumbing of the training loop (``torchrun``): process group,
sums across ranks, and the check that every replica ends with the same weights."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Distributed", "init_distributed", "all_sum", "replicas_identical"]



@dataclass
class Distributed:
    """This process's place in the group (one process, rank 0, without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False          # we initialised the process group (and must destroy it)

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_hint: str) -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    owned = False
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_hint in ("auto", "cuda")
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
        owned = True
    return Distributed(dist.get_rank(), dist.get_world_size(), local, owned)


def all_sum(values: list[float], d: Distributed, device: torch.device) -> list[float]:
    if d.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def replicas_identical(model: nn.Module, d: Distributed, device: torch.device) -> bool:
    """Rank 0 broadcasts its parameters; every rank compares them with its own, bit for bit.

    Buffers (BN running statistics) are local to each rank under DDP (DDP copies rank 0's
    at every forward); they are then made identical by broadcasting rank 0's.
    """
    if d.world == 1:
        return True
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
        ref = flat.clone()
        dist.broadcast(ref, 0)
        same = torch.tensor([0.0 if torch.equal(flat, ref) else 1.0], device=device)
        dist.all_reduce(same)
        for b in model.buffers():
            dist.broadcast(b, 0)
    return bool(same.item() == 0)


