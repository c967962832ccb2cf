"""Anchor selection for cluster split (HCD Sec. 4.2, Table 5): density peak, random, farthest point.

How many anchors a cluster gets is decided the same way for every method: one per density peak, capped
at ``max_anchors``. A peak is a local density maximum of the mutual-kNN graph of the units (a unit with
no denser graph neighbour; the paper preset) or, with ``min_gap``, the densest unit and every unit whose
distance to the nearest denser unit (Rodriguez & Laio's delta) is at least ``min_gap`` (the tracking
preset: a gap in cosine distance, so a cluster made of two groups splits however its graph is wired).
A cluster whose units form one dense blob has one peak and is not split. Which units become anchors is
what the methods differ in.
"""

from __future__ import annotations

import torch

ANCHOR_METHODS = ("density_peak", "random", "farthest_point")


def unit_density(affinity: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """rho = own mass + affinity-weighted mass of graph neighbours (Rodriguez & Laio's local density)."""
    return weights + torch.bmm(affinity, weights.unsqueeze(-1)).squeeze(-1)


def _denser(rho: torch.Tensor) -> torch.Tensor:
    """D[g, a, b] = unit b is denser than unit a (ties broken by lower index, so the order is strict)."""
    n = rho.shape[1]
    index = torch.arange(n, device=rho.device)
    greater = rho.unsqueeze(1) > rho.unsqueeze(2)
    tie = (rho.unsqueeze(1) == rho.unsqueeze(2)) & (index.view(1, 1, n) < index.view(1, n, 1))
    return greater | tie


def density_peak_scores(
    affinity: torch.Tensor, cosine: torch.Tensor, weights: torch.Tensor, valid: torch.Tensor,
    min_gap: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rho, delta, is_peak): density, distance to the nearest denser unit, peak flag (a local maximum of the
    graph, or with ``min_gap`` the densest unit and every unit with delta >= ``min_gap``)."""
    rho = unit_density(affinity, weights).masked_fill(~valid, float("-inf"))
    denser = _denser(rho) & valid.unsqueeze(1)
    distance = (1.0 - cosine).clamp_min(0.0)
    inf = torch.full_like(distance, float("inf"))
    delta = torch.where(denser, distance, inf).min(dim=2).values
    farthest = torch.where(valid.unsqueeze(1), distance, torch.zeros_like(distance)).max(dim=2).values
    densest = torch.isinf(delta)
    delta = torch.where(densest, farthest, delta)
    if min_gap is None:
        is_peak = valid & ~(denser & (affinity > 0)).any(dim=2)
    else:
        is_peak = valid & (densest | (delta >= min_gap))
    return rho.masked_fill(~valid, 0.0), delta.masked_fill(~valid, 0.0), is_peak


def select_anchors(
    affinity: torch.Tensor,
    cosine: torch.Tensor,
    weights: torch.Tensor,
    valid: torch.Tensor,
    *,
    max_anchors: int = 8,
    method: str = "density_peak",
    generator: torch.Generator | None = None,
    min_gap: float | None = None,
) -> torch.Tensor:
    """Local indices of the anchors of every block, [G, max_anchors], -1 where a block has fewer.

    All blocks with at least one valid unit get at least one anchor.
    """
    if method not in ANCHOR_METHODS:
        raise ValueError(f"unknown anchor method {method!r}; choose from {ANCHOR_METHODS}")
    rho, delta, is_peak = density_peak_scores(affinity, cosine, weights, valid, min_gap)
    count = is_peak.sum(dim=1).clamp(max=max_anchors)
    k = min(max_anchors, valid.shape[1])
    if method == "density_peak":
        score = torch.where(is_peak, rho * delta, torch.full_like(rho, float("-inf")))
        order = torch.sort(score, dim=1, descending=True, stable=True).indices[:, :k]
    elif method == "random":
        noise = torch.rand(valid.shape, generator=generator, device="cpu").to(valid.device)
        score = torch.where(valid, noise, torch.full_like(noise, -1.0))
        order = torch.sort(score, dim=1, descending=True, stable=True).indices[:, :k]
    else:
        order = _farthest_points(cosine, rho, valid, k)
    slot = torch.arange(k, device=valid.device).unsqueeze(0)
    anchors = torch.where(slot < count.unsqueeze(1), order, torch.full_like(order, -1))
    if k < max_anchors:
        anchors = torch.cat([anchors, anchors.new_full((anchors.shape[0], max_anchors - k), -1)], dim=1)
    return anchors


def _farthest_points(cosine: torch.Tensor, rho: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Farthest point sampling from the densest unit of each block, [G, k] local indices."""
    num_blocks = valid.shape[0]
    distance = (1.0 - cosine).clamp_min(0.0)
    first = torch.where(valid, rho, torch.full_like(rho, float("-inf"))).argmax(dim=1)
    chosen = [first]
    nearest = distance[torch.arange(num_blocks, device=valid.device), first]
    for _ in range(1, k):
        candidate = torch.where(valid, nearest, torch.full_like(nearest, -1.0))
        nxt = candidate.argmax(dim=1)
        chosen.append(nxt)
        nearest = torch.minimum(nearest, distance[torch.arange(num_blocks, device=valid.device), nxt])
    return torch.stack(chosen, dim=1)
