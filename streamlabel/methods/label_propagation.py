"""Label propagation between cluster units (HCD Eq. 2-3), batched over padded blocks.

A block is one group of units (the units of a cluster to split, or the ego-net of a cluster to merge),
padded to a common size with id -1. Affinity is the cosine between unit centres when the two units
are mutual k-nearest neighbours (Eq. 3), symmetrically normalised S = D^-1/2 S_hat D^-1/2, and the
propagation is the closed form P* = (I - alpha S)^-1 Y0 (Eq. 2), solved for all blocks at once.
"""

from __future__ import annotations

import torch

_INT64_MAX = torch.iinfo(torch.long).max


def local_adjacency(ids: torch.Tensor, neighbor_ids: torch.Tensor) -> torch.Tensor:
    """A[g, a, b] = True when unit ids[g, b] is in the neighbour list of unit ids[g, a].

    ids [G, n] (global unit ids, -1 = padding); neighbor_ids [G, n, k] (global ids, -1 = empty).
    Uses a sorted search per block: O(G * n * k) memory, never an [n, k, n] table.
    """
    num_blocks, n = ids.shape
    k = neighbor_ids.shape[2]
    key = torch.where(ids < 0, torch.full_like(ids, _INT64_MAX), ids)
    sorted_key, order = torch.sort(key, dim=1)
    flat = neighbor_ids.reshape(num_blocks, n * k)
    pos = torch.searchsorted(sorted_key, flat.clamp_min(0)).clamp_max(n - 1)
    hit = (sorted_key.gather(1, pos) == flat) & (flat >= 0)
    local = order.gather(1, pos)
    adjacency = torch.zeros(num_blocks, n * n, dtype=torch.bool, device=ids.device)
    source = torch.arange(n, device=ids.device).repeat_interleave(k).unsqueeze(0).expand(num_blocks, -1)
    block, slot = hit.nonzero(as_tuple=True)
    adjacency[block, source[block, slot] * n + local[block, slot]] = True
    return adjacency.view(num_blocks, n, n)


def mutual_knn_affinity(centres: torch.Tensor, ids: torch.Tensor, neighbor_ids: torch.Tensor) -> torch.Tensor:
    """S_hat (Eq. 3): cosine of unit centres where the units are mutual k-NN, else 0; zero diagonal.

    centres [G, n, D] L2-normalised (padding rows arbitrary). Negative cosines are clipped to 0 so the
    graph weights stay non-negative.
    """
    adjacency = local_adjacency(ids, neighbor_ids)
    mutual = adjacency & adjacency.transpose(1, 2)
    valid = ids >= 0
    mutual &= valid.unsqueeze(2) & valid.unsqueeze(1)
    mutual &= ~torch.eye(ids.shape[1], dtype=torch.bool, device=ids.device).unsqueeze(0)
    cosine = torch.bmm(centres.float(), centres.float().transpose(1, 2)).clamp_min(0.0)
    return torch.where(mutual, cosine, torch.zeros_like(cosine))


def normalize_affinity(affinity: torch.Tensor) -> torch.Tensor:
    """S = D^-1/2 S_hat D^-1/2 with D the row sums (isolated units keep zero rows)."""
    degree = affinity.sum(dim=-1)
    inv_sqrt = torch.where(degree > 0, degree.clamp_min(1e-12).rsqrt(), torch.zeros_like(degree))
    return inv_sqrt.unsqueeze(-1) * affinity * inv_sqrt.unsqueeze(-2)


def propagate(normalized: torch.Tensor, initial: torch.Tensor, alpha: float) -> torch.Tensor:
    """Closed-form label propagation P* = (I - alpha S)^-1 Y0 for every block ([G, n, n], [G, n, K])."""
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    n = normalized.shape[-1]
    system = torch.eye(n, dtype=normalized.dtype, device=normalized.device) - alpha * normalized
    return torch.linalg.solve(system, initial.to(normalized.dtype))


def propagate_iterative(
    normalized: torch.Tensor, initial: torch.Tensor, alpha: float, *, steps: int = 2000, tol: float = 1e-10
) -> torch.Tensor:
    """Iterative form P_{t+1} = alpha S P_t + Y0 (Zhou et al. 2004); converges to ``propagate``."""
    current = initial.clone().to(normalized.dtype)
    for _ in range(steps):
        nxt = alpha * normalized @ current + initial
        if float((nxt - current).abs().max()) < tol:
            return nxt
        current = nxt
    return current
