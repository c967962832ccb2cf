"""Hybrid memory: the contrastive loss of HCD Eq. 1 (as SpCL) over source class centres and target entries.

Every feature f of a batch (source or target) is scored against one memory

    [w_1 .. w_ns, c_1 .. c_C, v_o1 .. v_oK]

with w_k the source class centres (held here, momentum-updated), c_k the centres of the target pseudo
label clusters and v_o the bank rows of the target outliers (un-clustered samples count as their own
instance entries, as in SpCL). The centres c_k are normalised to unit length by default (``loss.centres:
normalised``, this library's choice: every entry then scores on the same scale); SpCL and HCD use the
plain mean of the cluster's unit bank rows (``loss.centres: mean``, norm <= 1, smaller for loose
clusters). The loss of f is the cross-entropy of ``f . memory^T / tau`` against its
positive entry: w_y for a source sample of class y, its cluster centre (or its own instance entry) for a
target sample.

The target entries are not kept here: they are rebuilt from the policy's feature bank and labels by
``memory_entries`` (``BankUpdatePolicy.memory_entries()``), so they always follow the online labels. The
memory never receives gradients: the source centres are buffers updated by ``update_source`` after the
optimiser step, the target entries are detached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamlabel.banks.replicated_rows import ReplicatedRows, as_row_storage
from streamlabel.banks.row_shards import RowShards

Rows = torch.Tensor | ReplicatedRows | RowShards


def memory_entries(
    features: torch.Tensor, labels: torch.Tensor, *, centres: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target memory entries and the positive entry of every sample.

    ``features`` [N, D] (bank rows), ``labels`` [N] (pseudo labels, negative = outlier). Returns
    ``entries`` [C + K, D] float32: the C cluster centres in label order (the plain mean of the rows of
    each label, as SpCL and HCD), then one instance entry per outlier (its own row, in sample order);
    and ``positive_index`` [N]: the entry of each sample (its centre, or its own instance entry).

    Labels should be dense (0..C-1); ids absent from ``labels`` are dropped (later ids move down) so no
    empty centre ever enters the softmax. A cluster whose rows sum to zero gets a zero centre, never NaN.
    ``centres="normalised"``: each centre scaled to unit length instead (an option, not the papers').
    """
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got {tuple(features.shape)}")
    if labels.shape != (features.shape[0],):
        raise ValueError(f"labels must be [{features.shape[0]}], got {tuple(labels.shape)}")
    labels = labels.to(features.device).long()
    clustered = labels >= 0
    ids = torch.where(clustered, labels, torch.zeros_like(labels))
    num_ids = int(ids.max()) + 1 if labels.numel() else 0
    present = torch.zeros(num_ids, dtype=torch.bool, device=labels.device)
    present[ids[clustered]] = True
    # one row per id: sum of its features (normalise(mean) == normalise(sum), the count cancels)
    sums = torch.zeros(num_ids, features.shape[1], dtype=torch.float32, device=features.device)
    sums.index_add_(0, ids[clustered], features[clustered].float())
    counts = torch.bincount(ids[clustered], minlength=num_ids) if centres == "mean" else None
    return memory_entries_from_sums(sums, present, torch.where(clustered, ids, -1), features, counts=counts)


def memory_entries_from_sums(
    cluster_sums: Rows, keep: torch.Tensor, sample_ids: torch.Tensor, features: Rows,
    *, counts: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``memory_entries`` from per-id feature sums a label bank already maintains.

    ``cluster_sums`` [K, D]: feature sum of every cluster id; ``keep`` [K] bool: ids that are clusters
    (entries, in ascending id order); ``sample_ids`` [N]: the cluster id of every sample, negative for
    none; samples whose id is negative or not kept are outliers and get their own row of ``features``.
    ``counts`` [K] (members per id): the centres are the plain means ``sum / count``; None: unit length.
    ``cluster_sums`` and ``features`` are tensors or row storages (banks/replicated_rows.py); a
    RowShards is read with ``gather_rows``, a collective: every rank calls this function.
    """
    cluster_sums, features = as_row_storage(cluster_sums), as_row_storage(features)
    keep = keep.to(cluster_sums.device)
    sample_ids = sample_ids.to(cluster_sums.device).long()
    rank = torch.cumsum(keep.long(), 0) - 1  # entry of every kept id
    safe = sample_ids.clamp_min(0)
    clustered = (sample_ids >= 0) & keep[safe] if keep.numel() else torch.zeros_like(sample_ids, dtype=torch.bool)
    if counts is None:
        centres = F.normalize(cluster_sums.gather_rows(keep).float(), dim=1)
    else:
        size = counts.to(cluster_sums.device)[keep].clamp_min(1).unsqueeze(1).float()
        centres = cluster_sums.gather_rows(keep).float() / size
    outliers = (~clustered).nonzero().flatten()
    instances = F.normalize(features.gather_rows(outliers).float(), dim=1)
    num_clusters = centres.shape[0]
    outlier_rank = torch.cumsum((~clustered).long(), 0) - 1
    cluster_entry = rank[safe] if keep.numel() else torch.zeros_like(sample_ids)
    positive = torch.where(clustered, cluster_entry, num_clusters + outlier_rank)
    return torch.cat([centres, instances.to(centres.device)]), positive


class HybridMemory(torch.nn.Module):
    """Source class centres (buffers) and the HCD / SpCL hybrid contrastive loss.

    ``num_source_classes = 0`` is the unsupervised mode: only target entries, no source samples.

    Source update (``update_source``): SpCL moves w_y = normalise(m * w_y + (1 - m) * f) once per source
    sample, one sample after another. Here a batch is one vectorised step: the L2-normalised batch
    features are first averaged per class (f_bar_y, not renormalised), then every class present in the
    batch takes a single step w_y = normalise(m * w_y + (1 - m) * f_bar_y). With one sample per class
    this is exactly SpCL; with several it treats them as one observation instead of applying m once per
    sample (which would make the result depend on the order of the samples in the batch). Classes absent
    from the batch are not touched.
    """

    source_centres: torch.Tensor

    def __init__(
        self, num_source_classes: int, feat_dim: int, *, temperature: float = 0.05, momentum: float = 0.2
    ) -> None:
        super().__init__()
        if num_source_classes < 0 or feat_dim < 1:
            raise ValueError(f"need num_source_classes >= 0 and feat_dim >= 1, got {num_source_classes}, {feat_dim}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.register_buffer("source_centres", torch.zeros(num_source_classes, feat_dim))

    @property
    def num_source_classes(self) -> int:
        return self.source_centres.shape[0]

    @property
    def feat_dim(self) -> int:
        return self.source_centres.shape[1]

    def extra_repr(self) -> str:
        return (f"num_source_classes={self.num_source_classes}, feat_dim={self.feat_dim}, "
                f"temperature={self.temperature}, momentum={self.momentum}")

    # ------------------------------------------------------------------ source centres
    def _check_source(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if features.ndim != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(f"source features must be [B, {self.feat_dim}], got {tuple(features.shape)}")
        if labels.shape != (features.shape[0],):
            raise ValueError(f"source labels must be [{features.shape[0]}], got {tuple(labels.shape)}")
        labels = labels.to(self.source_centres.device).long()
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_source_classes):
            low, high = int(labels.min()), int(labels.max())
            raise ValueError(f"source labels must lie in [0, {self.num_source_classes}), got {low}..{high}")
        feats = F.normalize(features.detach().to(self.source_centres.device, torch.float32), dim=1)
        return feats, labels

    def _class_sums(self, feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sums = torch.zeros_like(self.source_centres).index_add_(0, labels, feats)
        counts = torch.bincount(labels, minlength=self.num_source_classes)
        return sums, counts

    @torch.no_grad()
    def init_source(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """w_k = normalised mean of the (normalised) source features of class k, from a full feature pass.

        A class with no sample keeps a zero centre (logit 0, no NaN) until its first ``update_source``,
        which then sets it to the batch mean direction.
        """
        feats, labels = self._check_source(features, labels)
        sums, _ = self._class_sums(feats, labels)
        self.source_centres.copy_(F.normalize(sums, dim=1))

    @torch.no_grad()
    def update_source(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """One momentum step per source class present in the batch; call it after the optimiser step."""
        feats, labels = self._check_source(features, labels)
        if labels.numel() == 0:
            return
        sums, counts = self._class_sums(feats, labels)
        present = counts > 0
        mean = sums[present] / counts[present].unsqueeze(1).float()
        moved = self.momentum * self.source_centres[present] + (1.0 - self.momentum) * mean
        self.source_centres[present] = F.normalize(moved, dim=1)

    # ------------------------------------------------------------------ loss
    def loss(
        self,
        source_feats: torch.Tensor | None,
        source_labels: torch.Tensor | None,
        target_feats: torch.Tensor | None,
        target_indices: torch.Tensor | None,
        target_entries: torch.Tensor,
        target_positive: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """HCD Eq. 1 for every feature of the batch.

        ``source_feats`` [Bs, D] with classes ``source_labels`` [Bs] (None or empty in unsupervised mode);
        ``target_feats`` [Bt, D] of the bank samples ``target_indices`` [Bt]; ``target_entries`` [M, D]
        and ``target_positive`` [N] from ``memory_entries``. Features are L2-normalised here and the
        logits are computed in float32 (autocast off). Returns ``loss`` (mean over all Bs + Bt samples),
        ``source_loss`` and ``target_loss`` (means over each part, 0 for an empty part).
        """
        device = self.source_centres.device
        dim = self.feat_dim
        if source_feats is None or source_feats.numel() == 0:
            source_feats = torch.zeros(0, dim, device=device)
            source_labels = torch.zeros(0, dtype=torch.long, device=device)
        if target_feats is None or target_feats.numel() == 0:
            target_feats = torch.zeros(0, dim, device=device)
            target_indices = torch.zeros(0, dtype=torch.long, device=device)
        assert source_labels is not None and target_indices is not None
        for name, feats in (("source_feats", source_feats), ("target_feats", target_feats)):
            if feats.ndim != 2 or feats.shape[1] != dim:
                raise ValueError(f"{name} must be [B, {dim}], got {tuple(feats.shape)}")
        if source_labels.shape != (source_feats.shape[0],):
            raise ValueError(f"source_labels must be [{source_feats.shape[0]}], got {tuple(source_labels.shape)}")
        if target_indices.shape != (target_feats.shape[0],):
            raise ValueError(f"target_indices must be [{target_feats.shape[0]}], got {tuple(target_indices.shape)}")
        if target_entries.ndim != 2 or target_entries.shape[1] != dim:
            raise ValueError(f"target_entries must be [M, {dim}], got {tuple(target_entries.shape)}")
        num_source, num_target = source_feats.shape[0], target_feats.shape[0]
        if num_source + num_target == 0:
            raise ValueError("hybrid memory loss of an empty batch")
        n_s = self.num_source_classes
        if num_source and (int(source_labels.min()) < 0 or int(source_labels.max()) >= n_s):
            raise ValueError(f"source labels must lie in [0, {n_s}) (source classes of this memory)")
        positive_t = target_positive.to(device).long()[target_indices.to(device).long()]
        if num_target and (int(positive_t.min()) < 0 or int(positive_t.max()) >= target_entries.shape[0]):
            raise ValueError(f"target positives must lie in [0, {target_entries.shape[0]}) (target entries)")

        with torch.autocast(device_type=device.type, enabled=False):
            feats = F.normalize(torch.cat([source_feats.float(), target_feats.to(device).float()]), dim=1)
            memory = torch.cat([self.source_centres.float(), target_entries.detach().to(device, torch.float32)])
            logits = feats @ memory.t() / self.temperature
            targets = torch.cat([source_labels.to(device).long(), positive_t + n_s])
            per_sample = F.cross_entropy(logits, targets, reduction="none")
        zero = per_sample.new_zeros(())
        return {
            "loss": per_sample.mean(),
            "source_loss": per_sample[:num_source].mean() if num_source else zero,
            "target_loss": per_sample[num_source:].mean() if num_target else zero,
        }
