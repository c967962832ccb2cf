"""Pseudo-label quality against ground-truth identities.

Every metric is computed from a *sparse* contingency table (only the non-empty (pred, true) cells), so
memory and time are O(N log N) in the number of samples; no N x N matrix is ever formed.

Outliers: a predicted label < 0 (``-1`` by convention) marks an un-clustered sample. Each outlier is
counted as its own singleton cluster, in every metric. Ground-truth labels are used as given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Labels", "ari", "bcubed", "contingency", "label_quality_report", "nmi", "pairwise_f"]

Labels = np.ndarray | torch.Tensor | Sequence[int]


@dataclass(frozen=True)
class Contingency:
    """Non-empty cells ``n_ij`` of the pred x true table with row sums ``a_i`` and column sums ``b_j``.

    ``cell_a`` / ``cell_b`` hold, for each cell, the size of its predicted / true cluster.
    """

    cells: np.ndarray  # float64 [C] counts n_ij
    cell_a: np.ndarray  # float64 [C] a_i of the cell's row
    cell_b: np.ndarray  # float64 [C] b_j of the cell's column
    a: np.ndarray  # float64 [P] predicted cluster sizes
    b: np.ndarray  # float64 [T] true class sizes
    n: int


def _to_numpy(labels: Labels, name: str) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    integral = np.issubdtype(arr.dtype, np.integer) or (
        np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
    )
    if arr.size and not integral:
        raise ValueError(f"{name} must hold integer labels")
    return arr.astype(np.int64, copy=False)


def _prepare(pred: Labels, true: Labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate both label vectors and give every outlier (pred < 0) a fresh singleton label."""
    pred = _to_numpy(pred, "pred")
    true = _to_numpy(true, "true")
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same length, got {pred.shape[0]} and {true.shape[0]}")
    if pred.size == 0:
        raise ValueError("label quality needs at least one sample")
    out = pred < 0
    if out.any():
        pred = pred.copy()
        start = int(pred.max(initial=-1)) + 1
        pred[out] = start + np.arange(int(out.sum()), dtype=np.int64)
    return pred, true


def contingency(pred: Labels, true: Labels) -> Contingency:
    """Sparse contingency table of two labelings (outliers in ``pred`` become singletons)."""
    pred, true = _prepare(pred, true)
    _, p = np.unique(pred, return_inverse=True)
    _, t = np.unique(true, return_inverse=True)
    p = p.ravel()
    t = t.ravel()
    a = np.bincount(p).astype(np.float64)
    b = np.bincount(t).astype(np.float64)
    joint = p * np.int64(b.shape[0]) + t
    codes, cells = np.unique(joint, return_counts=True)
    rows, cols = np.divmod(codes, b.shape[0])
    return Contingency(
        cells=cells.astype(np.float64), cell_a=a[rows], cell_b=b[cols], a=a, b=b, n=int(pred.shape[0])
    )


def _f(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2.0 * p * r / (p + r)


def _comb2(x: np.ndarray) -> np.ndarray:
    return x * (x - 1.0) / 2.0


def bcubed(pred: Labels, true: Labels) -> tuple[float, float, float]:
    """BCubed (precision, recall, F): per-sample overlap of its predicted cluster and its true class.

    P = 1/N sum_ij n_ij^2 / a_i, R = 1/N sum_ij n_ij^2 / b_j; F is their harmonic mean.
    """
    return _bcubed(contingency(pred, true))


def _bcubed(ct: Contingency) -> tuple[float, float, float]:
    sq = ct.cells * ct.cells
    p = float(np.sum(sq / ct.cell_a) / ct.n)
    r = float(np.sum(sq / ct.cell_b) / ct.n)
    return p, r, _f(p, r)


def pairwise_f(pred: Labels, true: Labels) -> tuple[float, float, float]:
    """Pair-counting (precision, recall, F) over unordered sample pairs.

    A vacuous ratio (no predicted pairs, or no true pairs) is 1.0: nothing was got wrong.
    """
    return _pairwise(contingency(pred, true))


def _pairwise(ct: Contingency) -> tuple[float, float, float]:
    tp = float(np.sum(_comb2(ct.cells)))
    pred_pairs = float(np.sum(_comb2(ct.a)))
    true_pairs = float(np.sum(_comb2(ct.b)))
    p = tp / pred_pairs if pred_pairs > 0 else 1.0
    r = tp / true_pairs if true_pairs > 0 else 1.0
    return p, r, _f(p, r)


def _entropy(sizes: np.ndarray, n: int) -> float:
    q = sizes / n
    return float(-np.sum(q * np.log(q)))


def nmi(pred: Labels, true: Labels) -> float:
    """Normalised mutual information, arithmetic-mean normalisation (sklearn's default).

    Both labelings a single cluster -> 1.0; zero mutual information otherwise -> 0.0.
    """
    return _nmi(contingency(pred, true))


def _nmi(ct: Contingency) -> float:
    if ct.a.shape[0] == ct.b.shape[0] == 1:
        return 1.0
    n = float(ct.n)
    mi = float(np.sum(ct.cells / n * (np.log(ct.cells * n) - np.log(ct.cell_a * ct.cell_b))))
    if mi <= 0.0:
        return 0.0
    denom = 0.5 * (_entropy(ct.a, ct.n) + _entropy(ct.b, ct.n))
    return float(min(1.0, mi / max(denom, np.finfo(np.float64).eps)))


def ari(pred: Labels, true: Labels) -> float:
    """Adjusted Rand index (Hubert & Arabie) from pair counts; 1.0 when both labelings are identical
    partitions with no chance correction possible (e.g. both all-singletons or both one cluster)."""
    return _ari(contingency(pred, true))


def _ari(ct: Contingency) -> float:
    index = float(np.sum(_comb2(ct.cells)))
    sum_a = float(np.sum(_comb2(ct.a)))
    sum_b = float(np.sum(_comb2(ct.b)))
    total = float(_comb2(np.float64(ct.n)))
    if total == 0:
        return 1.0
    expected = sum_a * sum_b / total
    max_index = 0.5 * (sum_a + sum_b)
    if max_index == expected:
        return 1.0
    return float((index - expected) / (max_index - expected))


def label_quality_report(pred: Labels, true: Labels) -> dict[str, float | int]:
    """All label-quality numbers in one dict (keys as the `labels` CLI reports them)."""
    pred_np = _to_numpy(pred, "pred")
    true_np = _to_numpy(true, "true")
    ct = contingency(pred_np, true_np)
    bp, br, bf = _bcubed(ct)
    pp, pr, pf = _pairwise(ct)
    valid = pred_np[pred_np >= 0]
    return {
        "bcubed_p": bp,
        "bcubed_r": br,
        "bcubed_f": bf,
        "pairwise_p": pp,
        "pairwise_r": pr,
        "pairwise_f": pf,
        "nmi": _nmi(ct),
        "ari": _ari(ct),
        "clusters": int(np.unique(valid).shape[0]),
        "outlier_frac": float(np.mean(pred_np < 0)),
    }
