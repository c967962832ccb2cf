"""Feature helpers shared by the bank and method tests (small, seeded, CPU only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def unit_rows(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """n random L2-normalised rows of dimension d."""
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1)


def brute_topk_sims(
    queries: torch.Tensor, bank: torch.Tensor, k: int, exclude: torch.Tensor | None = None
):
    """Exact top-k similarities by a full [Q, N] product (the reference for every k-NN check)."""
    sims = queries.float() @ bank.float().t()
    if exclude is not None:
        sims[torch.arange(queries.shape[0]), exclude] = float("-inf")
    return torch.topk(sims, min(k, bank.shape[0]), dim=1).values


def circle_points(degrees: list[float], dim: int = 2) -> torch.Tensor:
    """Unit vectors at the given angles in the first two coordinates (zero padded to ``dim``)."""
    import math

    out = torch.zeros(len(degrees), dim)
    for i, a in enumerate(degrees):
        out[i, 0] = math.cos(math.radians(a))
        out[i, 1] = math.sin(math.radians(a))
    return out


def knn_lists(centres: torch.Tensor, k: int) -> torch.Tensor:
    """Brute-force k-NN lists (self excluded) of every row, [n, k]."""
    sims = centres @ centres.t()
    sims.fill_diagonal_(float("-inf"))
    return torch.topk(sims, k, dim=1).indices


def gaussian_mixture(
    num_ids: int,
    dim: int,
    min_size: int,
    max_size: int,
    noise: float,
    seed: int = 0,
    max_cos: float = 0.4,
):
    """Well separated unit-norm centres (pairwise cosine < max_cos), min..max points each.

    Returns (features [N, D] unit-norm, ids [N], centres [C, D], generator for further draws).
    """
    g = torch.Generator().manual_seed(seed)
    centres: list[torch.Tensor] = []
    while len(centres) < num_ids:
        v = F.normalize(torch.randn(dim, generator=g), dim=0)
        if all(float(v @ c) < max_cos for c in centres):
            centres.append(v)
    cent = torch.stack(centres)
    sizes = torch.randint(min_size, max_size + 1, (num_ids,), generator=g)
    ids = torch.repeat_interleave(torch.arange(num_ids), sizes)
    feats = F.normalize(cent[ids] + noise * torch.randn(ids.numel(), dim, generator=g), dim=1)
    return feats, ids, cent, g
