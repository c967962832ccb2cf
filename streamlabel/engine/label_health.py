"""Degenerate pseudo labels, named in the log: training on them goes on, but the researcher should know."""

from __future__ import annotations

import torch

OUTLIER_LIMIT = 0.9  # share of outliers (-1) above which the labels say little
GIANT_LIMIT = 0.5  # share of all samples in one cluster above which the labels say little
FEW_CLUSTERS = 2  # at most this many clusters over MIN_SAMPLES_FOR_FEW or more samples: a collapse
MIN_SAMPLES_FOR_FEW = 20
MAX_MEAN_SIZE = 100  # mean cluster size above which the clusters cannot be identities (re-ID: ~4-30)


def degenerate_labels(labels: torch.Tensor, cameras: torch.Tensor | None = None) -> list[str]:
    """What is degenerate about ``labels`` (-1 = outlier): mostly outliers, one giant cluster, one camera."""
    labels = labels.detach().cpu().long().flatten()
    total = labels.numel()
    if total == 0:
        return ["no samples"]
    notes = []
    clustered = labels[labels >= 0]
    outliers = total - clustered.numel()
    if clustered.numel() == 0:
        notes.append(f"every one of the {total} samples is an outlier: the loss uses instance entries only")
    elif outliers > OUTLIER_LIMIT * total:
        notes.append(f"{outliers} of {total} samples ({100 * outliers / total:.1f}%) are outliers")
    if clustered.numel():
        sizes = torch.bincount(clustered)
        biggest = int(sizes.max())
        if int((sizes > 0).sum()) == 1 and outliers == 0:
            notes.append(f"all {total} samples are in a single cluster: the target loss has one entry")
        elif biggest > GIANT_LIMIT * total:
            notes.append(f"one cluster holds {biggest} of {total} samples ({100 * biggest / total:.1f}%)")
        count = int((sizes > 0).sum())
        few = 1 < count <= FEW_CLUSTERS and total >= MIN_SAMPLES_FOR_FEW
        if few or clustered.numel() > MAX_MEAN_SIZE * count:
            notes.append(f"only {count} cluster(s) for {total} samples "
                         f"(mean size {clustered.numel() / count:.1f})")
    if cameras is not None and cameras.numel() == total and torch.unique(cameras).numel() == 1:
        notes.append("every sample comes from one camera")
    return notes


def degenerate_message(labels: torch.Tensor, cameras: torch.Tensor | None = None) -> str | None:
    """One log line about degenerate labels, or None when they look healthy."""
    notes = degenerate_labels(labels, cameras)
    return f"degenerate pseudo labels: {'; '.join(notes)}" if notes else None
