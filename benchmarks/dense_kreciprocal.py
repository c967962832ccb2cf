"""A dense reference of SpCL's label refresh, written from the algorithm: k-reciprocal Jaccard distance
(Zhong et al., CVPR 2017, "Re-ranking person re-identification with k-reciprocal encoding") on N x N
matrices, then DBSCAN at eps - gap, eps, eps + gap and SpCL's reliability filter.

Steps, each on full N x N tensors (row blocks only bound the temporaries):

1. d(p, g) = ||x_p - x_g||^2 for all pairs (one N x N matrix), N(p, k) = the k + 1 nearest (p included).
2. R(p, k) = {g in N(p, k) : p in N(g, k)} as dense boolean N x N membership matrices, for k1 and
   round(k1 / 2) (Eq. 4).
3. R*(p, k1) = R(p, k1) with R(q, k1/2) added for each q in R(p, k1) when more than 2/3 of
   R(q, k1/2) lies in R(p, k1) (Eq. 6, strict as in the released code and ``expanded_k_reciprocal``).
4. V[p, g] = exp(-d(p, g)) on R*(p), 0 elsewhere, rows scaled to sum 1 (Eq. 7 with SpCL's unscaled
   distance; ``row_max_scaling`` divides d by each row's maximum as the paper does).
5. Local query expansion V_p <- mean of V_g over the k2 nearest g, p included (Eq. 10).
6. d_J(p, g) = 1 - sum_j min(V_pj, V_gj) / sum_j max(V_pj, V_gj) for every pair (Eq. 11), one dense
   N x N matrix; a row sums min over its own non-zero columns j (min is 0 elsewhere), reading
   column j of V for all g at once, and sum max = sum V_p + sum V_g - sum min.
7. DBSCAN on the dense matrix for each eps (Ester et al. 1996): core = at least ``min_samples``
   points within eps (itself included), clusters = connected components of core points within eps
   (scipy), a non-core point within eps of a core point joins its nearest core point's cluster (ties:
   smallest id; the library's deterministic border rule), the rest is noise (-1).
8. SpCL's reliability filter (R_indep with eps + gap, R_comp with eps - gap) via
   ``streamlabel.methods.spcl``: this reference is about the distances and clustering, not the filter.

Memory: up to three N x N float32 matrices alive at once (d + V, V + V_qe, V_qe + d_J) plus N x N
booleans, ~12 N^2 bytes: 1.9 GiB at N = 12,936.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from streamlabel.methods.dbscan import dense_relabel
from streamlabel.methods.spcl import independence_threshold, reliability_scores, reliable_labels

__all__ = ["dense_dbscan", "dense_jaccard", "dense_spcl_labels"]


def _reciprocal(knn: torch.Tensor, k: int) -> torch.Tensor:
    """Dense boolean R(p, k) [N, N]: g in the k + 1 nearest of p and p in the k + 1 nearest of g."""
    n = knn.shape[0]
    near = torch.zeros(n, n, dtype=torch.bool)
    near.scatter_(1, knn[:, : k + 1], True)
    return near & near.T


def dense_jaccard(
    x: torch.Tensor, k1: int = 30, k2: int = 6, *, row_max_scaling: bool = False, block: int = 512,
    stages: dict | None = None,
) -> torch.Tensor:
    """The N x N k-reciprocal Jaccard distance matrix of the rows of ``x`` (steps 1-6)."""
    stages = {} if stages is None else stages
    n = x.shape[0]
    start = time.perf_counter()
    sq = (x * x).sum(1)
    dist = torch.empty(n, n)
    for s in range(0, n, block):
        dist[s : s + block] = (sq[s : s + block, None] + sq[None, :] - 2.0 * (x[s : s + block] @ x.T)).clamp_min_(0)
    dist.fill_diagonal_(0.0)
    if row_max_scaling:
        dist /= dist.amax(1, keepdim=True).clamp_min_(torch.finfo(dist.dtype).tiny)
    knn = torch.cat([torch.topk(dist[s : s + block], k1 + 1, dim=1, largest=False).indices
                     for s in range(0, n, block)])
    stages["distances_knn_s"] = time.perf_counter() - start

    start = time.perf_counter()
    half = int(round(k1 / 2))
    r1, rh = _reciprocal(knn, k1), _reciprocal(knn, half)
    # R(p, k1) and R(q, k1/2) as padded lists (-1 = not reciprocal) taken from the k-NN ranks
    r1_list = torch.where(r1.gather(1, knn[:, : k1 + 1]), knn[:, : k1 + 1], -1)
    rh_list = torch.where(rh.gather(1, knn[:, : half + 1]), knn[:, : half + 1], -1)
    del rh
    r_star = r1.clone()
    for s in range(0, n, block):
        q = r1_list[s : s + block]  # [b, k1+1] candidates q in R(p, k1)
        cand = rh_list[q.clamp_min(0)]  # [b, k1+1, half+1] R(q, k1/2)
        ok = (cand >= 0) & (q >= 0)[..., None]
        rows = torch.arange(s, s + q.shape[0])[:, None, None].expand_as(cand)
        inside = r1[rows, cand.clamp_min(0)] & ok  # g in R(p, k1)
        take = inside.sum(-1) * 3 > ok.sum(-1) * 2  # |R(p) & R(q)| > 2/3 |R(q)|
        add = take[..., None] & ok
        r_star[rows[add], cand[add]] = True
    del r1
    v = torch.zeros(n, n)
    for s in range(0, n, block):
        w = torch.exp(-dist[s : s + block]) * r_star[s : s + block]
        v[s : s + block] = w / w.sum(1, keepdim=True)
    del dist, r_star
    v_qe = torch.empty(n, n)
    for s in range(0, n, block):
        v_qe[s : s + block] = v[knn[s : s + block, :k2]].mean(1)
    del v
    stages["encoding_s"] = time.perf_counter() - start

    start = time.perf_counter()
    v_cols = v_qe.T.contiguous()  # column j of V_qe as a contiguous row
    row_sum = v_qe.sum(1)
    jac = torch.empty(n, n)
    for p in range(n):  # the paper's loop over probes; each row is vectorised over all g
        cols = torch.nonzero(v_qe[p]).squeeze(1)
        smin = torch.minimum(v_cols[cols], v_qe[p, cols, None]).sum(0)
        jac[p] = 1.0 - smin / (row_sum[p] + row_sum - smin)
    del v_cols, v_qe
    stages["jaccard_s"] = time.perf_counter() - start
    return jac


def dense_dbscan(dist: torch.Tensor, eps: float, min_samples: int, block: int = 2048) -> torch.Tensor:
    """DBSCAN labels [N] (0..C-1 by smallest member, -1 = noise) of a dense distance matrix (step 7)."""
    n = dist.shape[0]
    count = torch.zeros(n, dtype=torch.long)
    for s in range(0, n, block):
        count[s : s + block] = (dist[s : s + block] <= eps).sum(1)  # the point itself included (d = 0)
    core = count >= min_samples
    core_idx = torch.nonzero(core).squeeze(1)
    m = core_idx.numel()
    edges = []
    for s in range(0, m, block):  # core-core pairs within eps, one block of core rows at a time
        a, b = torch.nonzero(dist[core_idx[s : s + block]][:, core_idx] <= eps, as_tuple=True)
        edges.append((a + s, b))
    a = torch.cat([e[0] for e in edges]) if edges else torch.zeros(0, dtype=torch.long)
    b = torch.cat([e[1] for e in edges]) if edges else torch.zeros(0, dtype=torch.long)
    graph = coo_matrix((np.ones(a.numel(), dtype=np.int8), (a.numpy(), b.numpy())), shape=(m, m))
    comp = torch.from_numpy(connected_components(graph, directed=False)[1]).long()
    labels = torch.full((n,), -1, dtype=torch.long)
    labels[core_idx] = comp
    border = torch.nonzero(~core & (count > 1)).squeeze(1)
    for s in range(0, border.numel() if m else 0, block):
        rows = border[s : s + block]
        to_core = dist[rows][:, core_idx]
        best, pos = to_core.masked_fill(to_core > eps, float("inf")).min(1)  # first = smallest core id
        hit = torch.isfinite(best)
        labels[rows[hit]] = comp[pos[hit]]
    return dense_relabel(labels)


def dense_spcl_labels(
    x: torch.Tensor, *, k1: int = 30, k2: int = 6, eps: float = 0.6, eps_gap: float = 0.02,
    min_samples: int = 4, reliability_percentile: float = 0.9, stages: dict | None = None,
) -> dict[str, torch.Tensor]:
    """SpCL's first refresh on dense matrices: {"tight", "labels", "loose", "reliable"} label vectors."""
    stages = {} if stages is None else stages
    jac = dense_jaccard(x.float(), k1, k2, stages=stages)
    start = time.perf_counter()
    out = {name: dense_dbscan(jac, e, min_samples)
           for name, e in (("tight", eps - eps_gap), ("labels", eps), ("loose", eps + eps_gap))}
    del jac
    r_indep, r_comp = reliability_scores(out["labels"], out["tight"], out["loose"])
    alpha = independence_threshold(out["labels"], r_indep, reliability_percentile)
    reliable = out["labels"] if alpha is None else reliable_labels(out["labels"], r_indep, r_comp, alpha=alpha)
    out["reliable"] = dense_relabel(reliable)
    stages["dbscan_s"] = time.perf_counter() - start
    return out
