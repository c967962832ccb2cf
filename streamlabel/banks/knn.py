"""Exact k-nearest-neighbour search of query rows against a bank (cosine / inner product).

The torch path is blocked over queries so memory stays O(block * N + Q * k) on any device; faiss is
used when installed and asked for. Neither ever builds an N x N matrix.
"""

from __future__ import annotations

import torch

_NEG_INF = float("-inf")


def faiss_available() -> bool:
    """True when the faiss module can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def faiss_following_torch_threads():
    """The faiss module with its OpenMP threads set to torch's intra-op threads (``cpu_threads``): faiss
    otherwise takes every core, whatever the run was told."""
    import faiss

    faiss.omp_set_num_threads(torch.get_num_threads())
    return faiss


def topk_inner_product(
    queries: torch.Tensor,
    bank: torch.Tensor,
    k: int,
    *,
    query_ids: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    block_size: int = 2048,
    backend: str = "torch",
    query_tags: torch.Tensor | None = None,
    bank_tags: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k bank rows by inner product for each query row: returns (similarities, indices), [Q, k].

    ``query_ids`` gives the bank row of each query (excluded from its own list, -1 = not in the bank);
    ``valid`` masks bank rows that may be returned; with ``query_tags`` / ``bank_tags`` (int64 bit masks, e.g.
    the cameras of a cluster) a row is returned only if it shares no bit with the query. Slots with no
    candidate hold index -1, sim -inf.
    """
    if queries.ndim != 2 or bank.ndim != 2 or queries.shape[1] != bank.shape[1]:
        raise ValueError(f"queries {tuple(queries.shape)} and bank {tuple(bank.shape)} must be [Q, D] and [N, D]")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    num_bank = bank.shape[0]
    num_queries = queries.shape[0]
    k_eff = min(k, num_bank)
    tagged = query_tags is not None and bank_tags is not None
    if backend == "faiss" and valid is None and not tagged and bank.device.type == "cpu":
        sims, idx = _faiss_topk(queries, bank, k_eff + (1 if query_ids is not None else 0))
        if query_ids is not None:
            sims, idx = _drop_self(sims, idx, query_ids, k_eff)
        return _pad(sims, idx, k)
    if backend not in ("torch", "faiss"):
        raise ValueError(f"unknown k-NN backend {backend!r}; choose 'torch' or 'faiss'")
    out_sims = torch.empty(num_queries, k_eff, dtype=torch.float32, device=queries.device)
    out_idx = torch.empty(num_queries, k_eff, dtype=torch.long, device=queries.device)
    bank_t = bank.t()
    for start in range(0, num_queries, block_size):
        stop = min(start + block_size, num_queries)
        sims = (queries[start:stop].to(bank.dtype) @ bank_t).float()
        if valid is not None:
            sims.masked_fill_(~valid.unsqueeze(0), _NEG_INF)
        if tagged:
            sims.masked_fill_(shares_tag(query_tags[start:stop], bank_tags), _NEG_INF)
        if query_ids is not None:
            rows = query_ids[start:stop]
            own = rows >= 0
            sims[torch.arange(stop - start, device=sims.device)[own], rows[own]] = _NEG_INF
        block_sims, block_idx = torch.topk(sims, k_eff, dim=1)
        block_idx.masked_fill_(torch.isinf(block_sims), -1)
        out_sims[start:stop] = block_sims
        out_idx[start:stop] = block_idx
    return _pad(out_sims, out_idx, k)


def _pad(sims: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad lists to k columns with (-inf, -1) when the bank holds fewer than k rows."""
    missing = k - sims.shape[1]
    if missing <= 0:
        return sims, idx
    sims = torch.cat([sims, sims.new_full((sims.shape[0], missing), _NEG_INF)], dim=1)
    idx = torch.cat([idx, idx.new_full((idx.shape[0], missing), -1)], dim=1)
    return sims, idx


def _drop_self(
    sims: torch.Tensor, idx: torch.Tensor, query_ids: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove each query's own row from a (k+1)-long list, keeping order."""
    is_self = idx == query_ids.unsqueeze(1)
    # push self matches to the end with a stable sort on the mask, then cut to k
    order = torch.sort(is_self.to(torch.int8), dim=1, stable=True).indices
    return sims.gather(1, order)[:, :k], idx.gather(1, order)[:, :k]


def _faiss_topk(queries: torch.Tensor, bank: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    faiss = faiss_following_torch_threads()
    index = faiss.IndexFlatIP(bank.shape[1])
    index.add(bank.float().contiguous().numpy())
    sims, idx = index.search(queries.float().contiguous().numpy(), k)
    sims, idx = torch.from_numpy(sims), torch.from_numpy(idx).long()
    # faiss marks missing results with id -1 and sim -FLT_MAX; use -inf like the torch path
    return sims.masked_fill(idx < 0, _NEG_INF), idx


def shares_tag(query_tags: torch.Tensor, bank_tags: torch.Tensor) -> torch.Tensor:
    """[Q, N] True where a query and a bank row have a tag bit in common (they may not be neighbours)."""
    return (query_tags.unsqueeze(1) & bank_tags.unsqueeze(0)) != 0
