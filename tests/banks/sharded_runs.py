"""One streamed HCD run (initialize, steps, hybrid memory loss before each step), in this process
or in each of several gloo processes started with torch.multiprocessing (the sharded-bank tests use
both)."""

from __future__ import annotations

import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from streamlabel.banks.hybrid_memory import HybridMemory
from streamlabel.methods import build_policy
from tests.helpers.features import gaussian_mixture

DIM = 32
# sharded: paper rules
SMALL = {"k": 6, "link_k": 2, "num_levels": 3, "knn_slack": 4, "dynamics": "paper"}


def stream_run(params: dict, steps: int = 12, batch_size: int = 16) -> dict:
    """Labels of every level and the loss trace of a seeded stream (the same data and batches on
    every rank)."""
    feats, ids, centres, g = gaussian_mixture(24, DIM, 6, 12, 0.1, seed=5)
    n = feats.shape[0]
    policy = build_policy("hcd", num_samples=n, feat_dim=DIM, **{**SMALL, **params})
    policy.initialize(feats)
    memory = HybridMemory(0, DIM)
    losses = []
    for step in range(steps):
        # the exact recompute of the cluster sums (summed in rank order when sharded)
        if step == steps // 2:
            policy.epoch_end(0)
        rows = torch.randperm(n, generator=g)[:batch_size]
        f = F.normalize(
            centres[ids[rows]] + 0.3 * torch.randn(rows.numel(), DIM, generator=g), dim=1
        )
        entries, positive = policy.memory_entries()
        losses.append(float(memory.loss(None, None, f, rows, entries, positive)["loss"]))
        policy.step(rows, f)
    rows = torch.arange(n)
    return {
        "labels": torch.stack([policy.labels(level) for level in range(SMALL["num_levels"])]),
        "raw_labels": policy.label_bank.labels.clone(),
        "losses": losses,
        # every rank reads every row (a collective when sharded)
        "bank": policy.bank.storage.gather_rows(rows),
        "graph0": policy.graphs[0].idx.clone(),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, runs: list[dict], steps: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.save([stream_run(params, steps) for params in runs], Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_processes(
    runs: list[dict], out: Path, *, world: int = 2, steps: int = 12
) -> list[list[dict]]:
    """``stream_run`` of every parameter set in ``runs``, in ``world`` gloo processes: [rank][run]
    results."""
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(_worker, args=(world, _free_port(), runs, steps, str(out)), nprocs=world, join=True)
    return [torch.load(out / f"rank{rank}.pt") for rank in range(world)]
