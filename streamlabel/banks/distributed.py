"""The few torch.distributed collectives the sharded banks use; without a process group they are no-ops (world 1).

The group is whatever ``torch.distributed`` was initialised with (accelerate sets it up: gloo on CPU,
NCCL on CUDA); nothing here creates one. Every function must be called by every rank in the same order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

# bytes this rank handed to collectives and how many it called (read by benchmarks/scale.py)
TRAFFIC = {"bytes": 0, "calls": 0}


def _count(tensor: torch.Tensor) -> None:
    TRAFFIC["bytes"] += tensor.numel() * tensor.element_size()
    TRAFFIC["calls"] += 1


def world_and_rank() -> tuple[int, int]:
    """(world size, rank) of the default process group; (1, 0) when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def all_reduce_(tensor: torch.Tensor, op: str = "sum", world: int | None = None) -> torch.Tensor:
    """In-place sum / max over the ranks (nothing to do at world 1); returns ``tensor``."""
    if (world_and_rank()[0] if world is None else world) > 1:
        _count(tensor)
        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return tensor


def all_gather_cat(tensor: torch.Tensor, dim: int = 0, world: int | None = None) -> torch.Tensor:
    """Every rank's ``tensor`` (same shape on all ranks) concatenated along ``dim`` in rank order."""
    world = world_and_rank()[0] if world is None else world
    if world == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world)]
    _count(tensor)
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=dim)


def all_gather_rows(tensor: torch.Tensor, world: int | None = None) -> torch.Tensor:
    """Every rank's rows concatenated in rank order, when ranks hold different numbers of rows."""
    world = world_and_rank()[0] if world is None else world
    if world == 1:
        return tensor
    count = torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device)
    counts = all_gather_cat(count, world=world)
    most = int(counts.max())
    padded = tensor.new_zeros((most, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    gathered = all_gather_cat(padded.unsqueeze(0), world=world)
    return torch.cat([gathered[r, : int(counts[r])] for r in range(world)])


def reduce_to(tensor: torch.Tensor, owner: int, world: int) -> None:
    """Sum ``tensor`` over the ranks into rank ``owner``'s copy (the others' copies are left undefined)."""
    if world > 1:
        _count(tensor)
        dist.reduce(tensor, dst=owner, op=dist.ReduceOp.SUM)


def ordered_sum_to(part: torch.Tensor, owner: int, world: int, add_own: Callable[[torch.Tensor], None]) -> None:
    """Sum every rank's contribution into ``part`` on rank ``owner`` in rank order, as one process adding all
    rows in order would (bit-identical to it, unlike a reduction tree): each rank receives the running sum
    from the rank before, adds its own (``add_own(part)``) and passes it on; the last rank hands it to
    ``owner``. Consecutive calls pipeline, since a rank goes on as soon as it has sent."""
    if world == 1:
        add_own(part)
        return
    rank = dist.get_rank()
    if rank > 0:
        dist.recv(part, src=rank - 1)
    add_own(part)
    if rank < world - 1:
        _count(part)
        dist.send(part, dst=rank + 1)
    elif owner != rank:
        _count(part)
        dist.send(part, dst=owner)
    if rank == owner and owner != world - 1:
        dist.recv(part, src=world - 1)
