"""FeatureBank: N x D L2-normalised rows on the training device with vectorised momentum updates."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamlabel.banks.replicated_rows import ReplicatedRows

_MIN_NORM = 1e-12  # below this a vector has no usable direction (F.normalize's own eps)
_MAX_SAFE = 1e18  # float32 squares overflow above ~1.8e19


def unit_rows(features: torch.Tensor) -> torch.Tensor:
    """L2-normalised float32 rows; rows whose squares would overflow (entries > 1e18) are scaled down first,
    so a 1e30 feature keeps its direction instead of becoming 0 (other rows are normalised exactly as before)."""
    features = features.float()
    if features.numel():
        peak = features.abs().amax(dim=1, keepdim=True)
        huge = peak > _MAX_SAFE
        if bool(huge.any()):
            features = torch.where(huge, features / peak, features)
    return F.normalize(features, dim=1)


def check_finite(features: torch.Tensor, what: str = "features") -> None:
    """Raise a ValueError naming the first bad row when ``features`` holds NaN or Inf."""
    bad = ~torch.isfinite(features)
    if bool(bad.any()):
        rows = bad.reshape(bad.shape[0], -1).any(dim=1).nonzero().flatten()
        raise ValueError(
            f"{what} contain NaN/Inf in {rows.numel()} row(s) (first: row {int(rows[0])}); "
            "the bank was not modified"
        )


def dedupe_rows(indices: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average the features of repeated indices so each bank row is written once per batch."""
    unique, inverse = torch.unique(indices, return_inverse=True)
    if unique.numel() == indices.numel():
        order = torch.argsort(indices)
        return indices[order], features[order]
    summed = features.new_zeros(unique.numel(), features.shape[1]).index_add_(0, inverse, features)
    counts = torch.bincount(inverse, minlength=unique.numel()).to(features.dtype)
    return unique, summed / counts.unsqueeze(1)


def checked_bank_args(num_samples: int, feat_dim: int, momentum: float) -> float:
    """Refuse a non-positive bank shape or a momentum outside [0, 1); returns the momentum as a float."""
    if num_samples < 1 or feat_dim < 1:
        raise ValueError(f"bank shape must be positive, got N={num_samples}, D={feat_dim}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    return float(momentum)


def segment_means(
    features: torch.Tensor, labels: torch.Tensor, num_segments: int, *, normalize: bool = False
) -> torch.Tensor:
    """Float32 mean of the rows [N, ...] of each label 0..num_segments-1 (labels < 0 ignored, empty
    segments zero); ``normalize`` L2-normalises the last dimension (the cluster centres of a bank)."""
    keep = labels >= 0
    sums = torch.zeros(num_segments, *features.shape[1:], device=features.device, dtype=torch.float32)
    sums.index_add_(0, labels[keep], features[keep].float())
    counts = torch.bincount(labels[keep], minlength=num_segments).clamp_min(1)
    means = sums / counts.view(-1, *([1] * (features.dim() - 1)))
    return F.normalize(means, dim=-1) if normalize else means


class FeatureBank:
    """Stored features v_i (rows L2-normalised) updated as v = m*v + (1-m)*f, then renormalised."""

    def __init__(
        self,
        num_samples: int,
        feat_dim: int,
        *,
        momentum: float = 0.2,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.momentum = checked_bank_args(num_samples, feat_dim, momentum)
        self.features = torch.zeros(num_samples, feat_dim, device=device, dtype=dtype)

    @property
    def num_samples(self) -> int:
        return self.features.shape[0]

    @property
    def feat_dim(self) -> int:
        return self.features.shape[1]

    @property
    def device(self) -> torch.device:
        return self.features.device

    @property
    def storage(self) -> ReplicatedRows:
        """The rows behind the row-storage interface (banks/replicated_rows.py): read them with
        ``storage.gather_rows(ids)``, which a sharded bank answers with a collective."""
        return ReplicatedRows(self.features)

    def _check(self, indices: torch.Tensor, features: torch.Tensor) -> None:
        if features.ndim != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(f"features must be [B, {self.feat_dim}], got {tuple(features.shape)}")
        if indices.shape != (features.shape[0],):
            raise ValueError(f"indices must be [{features.shape[0]}], got {tuple(indices.shape)}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_samples):
            raise ValueError(f"indices must lie in [0, {self.num_samples}), got {indices.min()}..{indices.max()}")
        check_finite(features)

    def initialize(self, features: torch.Tensor) -> None:
        """Fill every row from a full feature pass."""
        if features.shape != self.features.shape:
            raise ValueError(f"initial features must be {tuple(self.features.shape)}, got {tuple(features.shape)}")
        check_finite(features)
        zero = features.abs().amax(dim=1) < _MIN_NORM
        if bool(zero.any()):
            raise ValueError(f"initial features hold {int(zero.sum())} all-zero row(s) (first: row "
                             f"{int(zero.nonzero()[0])}): a zero feature has no direction; the bank was not modified")
        self.features.copy_(unit_rows(features.to(self.device)))

    def momentum_rows(self, indices: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows a momentum update would write, without writing them: (unique indices, new rows)."""
        if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
            raise ValueError(f"indices must be an integer tensor of bank rows, got dtype {indices.dtype} "
                             "(a float index would be truncated, a bool one read as 0/1)")
        indices = indices.to(self.device).long()
        self._check(indices, features)
        indices, features = dedupe_rows(indices, features.to(self.device, torch.float32))
        # collective on a sharded bank: every rank is here
        old = self.storage.gather_rows(indices).float()
        mixed = self.momentum * old + (1.0 - self.momentum) * unit_rows(features)
        # a (near-)zero feature has no direction: with momentum 0 it would zero the row, so the row keeps its value
        lost = mixed.norm(dim=1, keepdim=True) < _MIN_NORM
        return indices, torch.where(lost, old, F.normalize(mixed, dim=1))

    def write(self, indices: torch.Tensor, rows: torch.Tensor) -> None:
        """Store already-normalised rows (see ``momentum_rows``)."""
        check_finite(rows, "bank rows")
        self.features.index_copy_(0, indices, rows.to(self.features.dtype))

    def update(self, indices: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Momentum-update the batch rows; returns the unique indices written."""
        indices, rows = self.momentum_rows(indices, features)
        self.write(indices, rows)
        return indices

    def segment_means(self, labels: torch.Tensor, num_segments: int, normalize: bool = True) -> torch.Tensor:
        """Mean feature of each label (cluster centre); rows with label < 0 are ignored."""
        return segment_means(self.features, labels, num_segments, normalize=normalize)

    def state_dict(self) -> dict:
        return {"features": self.features.clone(), "momentum": self.momentum}

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["features"].shape) != tuple(self.features.shape):
            raise ValueError(
                f"feature bank shape mismatch: checkpoint {tuple(state['features'].shape)}, "
                f"this run {tuple(self.features.shape)}"
            )
        self.features.copy_(state["features"].to(self.device, self.features.dtype))
        self.momentum = float(state["momentum"])
