"""GlobalBatchNorm (engine/global_bn.py): two gloo processes, each with half the batch, give the outputs,
input gradients and running statistics of one BatchNorm over the whole batch, without a deprecation
warning from torch."""

from __future__ import annotations

import os
import socket
import warnings

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from streamlabel.engine.global_bn import convert_global_batchnorm


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 4, 4, generator=g, dtype=torch.float64), torch.randn(8, 3, 4, 4, generator=g,
                                                                                    dtype=torch.float64)


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        x, weight = _batch()
        bn = convert_global_batchnorm(nn.BatchNorm2d(3).double())
        part = x[rank * 4 : (rank + 1) * 4].clone().requires_grad_(True)
        with warnings.catch_warnings():
            warnings.simplefilter("error", category=FutureWarning)
            warnings.simplefilter("error", category=DeprecationWarning)
            y = bn(part)
            (y * weight[rank * 4 : (rank + 1) * 4]).sum().backward()
        torch.save({"y": y.detach(), "grad": part.grad, "mean": bn.running_mean, "var": bn.running_var},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one_batch_norm_over_the_whole_batch(tmp_path) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    x, weight = _batch()
    x = x.clone().requires_grad_(True)
    bn = nn.BatchNorm2d(3).double()
    y = bn(x)
    (y * weight).sum().backward()
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.detach())
    # the gradient of the loss summed over both ranks: each rank's input gradient is its part of the whole one
    torch.testing.assert_close(torch.cat([r["grad"] for r in ranks]), x.grad)
    for r in ranks:
        torch.testing.assert_close(r["mean"], bn.running_mean)
        torch.testing.assert_close(r["var"], bn.running_var)
