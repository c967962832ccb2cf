"""Reading feature dumps (.npz with ``feats`` [N, D] and integer ``pids`` / ``camids``) with clear errors."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamlabel.launch.errors import InputError

ID_KEYS = ("pids", "camids")


def load_feature_dump(
    path: Path, *, required: Sequence[str] = ("feats",), optional: Sequence[str] = ID_KEYS
) -> dict[str, np.ndarray]:
    """The ``required`` and present ``optional`` arrays of one dump: finite numeric 2-D ``feats``,
    integer 1-D id arrays of matching length. Anything else raises InputError naming file and key."""
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a .npz file")
    if not path.is_file():
        raise InputError(f"feature file not found: {path}")
    wanted = (*required, *optional)
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04":  # np.savez writes a zip archive
        raise InputError(f"{path}: not an .npz archive (np.savez writes a zip file; this one starts with {magic!r})")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise InputError(f"{path}: not an .npz archive (np.savez writes one)")
        with data:
            files = list(data.files)
            out = {k: np.asarray(data[k]) for k in wanted if k in files}
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        hint = "; truncated?" if isinstance(err, (EOFError, zipfile.BadZipFile)) else ""
        raise InputError(f"{path}: cannot read as .npz ({type(err).__name__}: {err}{hint})") from err
    missing = [k for k in required if k not in out]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)} (has: {', '.join(files) or 'nothing'})")
    feats = out["feats"]
    real = np.issubdtype(feats.dtype, np.floating) or np.issubdtype(feats.dtype, np.integer)
    if feats.ndim != 2 or not real:
        raise InputError(f"{path}: feats must be a real-valued [N, D] array, got {feats.dtype} {feats.shape}")
    if feats.shape[0] < 1 or feats.shape[1] < 1:
        raise InputError(f"{path}: feats must hold at least one row and one column, got shape {feats.shape}")
    bad_rows = ~np.isfinite(feats).all(axis=1)
    if bad_rows.any():
        raise InputError(f"{path}: feats contain NaN or infinite values in {int(bad_rows.sum())} row(s), "
                         f"first row {int(np.argmax(bad_rows))}")
    zero_rows = ~(np.abs(feats) > 0).any(axis=1)
    if zero_rows.any():
        raise InputError(f"{path}: feats has {int(zero_rows.sum())} all-zero row(s) (no direction to normalise), "
                         f"first row {int(np.argmax(zero_rows))}")
    for key in ID_KEYS:
        if key not in out:
            continue
        if out[key].ndim != 1 or out[key].shape[0] != feats.shape[0]:
            raise InputError(f"{path}: {key} has shape {out[key].shape}, expected ({feats.shape[0]},) to match feats")
        if not np.issubdtype(out[key].dtype, np.integer):
            raise InputError(f"{path}: {key} must be integers, got dtype {out[key].dtype}")
    return out


def unit_rows(feats: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float64, then float32: huge (1e300) or tiny (1e-30) finite rows keep
    their direction instead of overflowing to Inf or underflowing to zero in float32."""
    rows = feats.astype(np.float64)
    rows = rows / np.abs(rows).max(axis=1, keepdims=True)  # max |x| = 1 first: the norm cannot overflow
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def common_scale(*parts: np.ndarray) -> list[np.ndarray]:
    """All parts divided by one shared scale in float64, then float32: distances keep their order (one
    global factor) and neither overflow nor underflow in float32."""
    scale = max(float(np.abs(part).max()) for part in parts) or 1.0
    return [(part.astype(np.float64) / scale).astype(np.float32) for part in parts]


def feature_rank(unit: np.ndarray, sample: int = 1024, tol: float = 1e-3) -> int:
    """Numerical rank of (up to ``sample`` evenly spaced) unit rows: 1 = all rows point the same way."""
    rows = unit[:: max(1, len(unit) // sample)][:sample].astype(np.float64)
    singular = np.linalg.svd(rows, compute_uv=False)
    return int((singular > tol * singular[0]).sum())
