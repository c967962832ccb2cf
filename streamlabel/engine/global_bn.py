"""Batch norm over the global batch on any device: BN statistics never depend on the world size.

torch's SyncBatchNorm only runs on CUDA; ``GlobalBatchNorm`` all-reduces the per-channel sums and
sums of squares with torch's differentiable functional collective (``_functional_collectives.all_reduce``,
the replacement torch names for the deprecated ``torch.distributed.nn.functional.all_reduce``; gloo or
nccl), so every BN layer sees all images of the step whatever the number of processes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed import _functional_collectives as collectives


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm{1,2}d whose training statistics are reduced over all processes."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        count = torch.tensor([x.numel() / x.shape[1]], device=x.device, dtype=torch.float64)
        stats = torch.cat([x.double().sum(dims), (x.double() ** 2).sum(dims), count])
        stats = collectives.all_reduce(stats, "sum", dist.group.WORLD)  # backward: all-reduce of the grads
        channels = x.shape[1]
        total = stats[-1]
        mean = stats[:channels] / total
        var = stats[channels : 2 * channels] / total - mean**2
        with torch.no_grad():
            if self.track_running_stats and self.running_mean is not None:
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * total / (total - 1).clamp_min(1)
                self.running_mean.mul_(1 - m).add_(m * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - m).add_(m * unbiased.to(self.running_var.dtype))
        shape = [1, channels] + [1] * (x.dim() - 2)
        out = (x - mean.to(x.dtype).view(shape)) * torch.rsqrt(var.to(x.dtype).view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm1d/2d/3d of ``module`` by a GlobalBatchNorm with the same parameters."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        like = next(iter(module.parameters()), module.running_mean)  # keep the layer's dtype and device
        if like is not None:
            new = new.to(device=like.device, dtype=like.dtype)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        for param_new, param_old in zip(new.parameters(), module.parameters(), strict=True):
            param_new.requires_grad_(param_old.requires_grad)
        return new
    for name, child in module.named_children():
        setattr(module, name, convert_global_batchnorm(child))
    return module
