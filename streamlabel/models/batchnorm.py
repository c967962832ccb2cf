"""BatchNorm helpers for fine-tuning BN-folded models: un-fold, and re-centre statistics on target data.

Both operations leave the eval-mode function unchanged (up to float rounding); they only change
what train mode (batch statistics) computes, so that it starts close to the pretrained function.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from .osnet import ConvNorm


@torch.no_grad()
def unfold_batchnorm(model: nn.Module) -> int:
    """Give every folded :class:`ConvNorm` (biased conv, no BN) a BatchNorm2d that is the identity at eval.

    The conv bias moves into the BN shift; running stats are (0, 1) and the scale sqrt(1 + eps), so
    eval outputs are unchanged. Call :func:`calibrate_batchnorm` next, otherwise train mode whitens
    every channel. Returns the number of BN layers added.
    """
    added = 0
    for module in model.modules():
        if isinstance(module, ConvNorm) and isinstance(module.bn, nn.Identity):
            conv = module.conv
            bn = nn.BatchNorm2d(conv.out_channels).to(conv.weight.device, conv.weight.dtype)
            bn.weight.fill_(math.sqrt(1.0 + bn.eps))
            bn.bias.copy_(conv.bias if conv.bias is not None else torch.zeros_like(bn.bias))
            conv.register_parameter("bias", None)
            module.bn = bn
            added += 1
    if hasattr(model, "fold_bn"):
        model.fold_bn = False
    return added


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Set every BN's running mean/var to the statistics of ``batches`` while keeping the eval function.

    For each BN with scale a = gamma / sqrt(var + eps): new var/mean from the data, gamma' = a *
    sqrt(var' + eps), beta' = beta + a * (mean' - mean). Eval outputs stay identical; in train mode
    the batch statistics of target-like data now match the running ones, so training starts from the
    pretrained function. Returns the number of BN layers updated.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]
    sums: dict[nn.Module, list[torch.Tensor | int]] = {}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].detach().double()
        dims = [d for d in range(x.dim()) if d != 1]
        acc = sums.setdefault(module, [0.0, 0.0, 0])
        acc[0] = acc[0] + x.sum(dim=dims)
        acc[1] = acc[1] + (x * x).sum(dim=dims)
        acc[2] += x.numel() // x.shape[1]

    handles = [bn.register_forward_pre_hook(hook) for bn in bns]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        for batch in batches:
            model(batch.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    for bn in bns:
        if bn not in sums:
            continue
        s, ss, n = sums[bn]
        mean = s / n
        var = (ss / n - mean * mean).clamp(min=0) * n / max(n - 1, 1)  # unbiased, as BN stores it
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        bn.bias.copy_(bn.bias.double() + scale * (mean - bn.running_mean.double()))
        bn.weight.copy_(scale * torch.sqrt(var + bn.eps))
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
    return len(sums)
