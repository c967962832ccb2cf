"""Reading feature dumps (.npz with ``feats`` [N, D] and integer ``pids`` / ``camids``) with clear errors."""

from __future__ import annotations

import math
import stat
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamlabel.config.limits import human_bytes, memory_problem
from streamlabel.launch.errors import InputError

ID_KEYS = ("pids", "camids")
NPY_MAGIC = b"\x93NUMPY"


def _read_npy_header(member, version: tuple[int, int]) -> tuple[tuple, bool, np.dtype]:
    """shape, fortran order and dtype of an .npy stream positioned after its magic (numpy's own parser: a
    literal dict of at most 10,000 bytes, nothing evaluated)."""
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(member)
    impl = getattr(np.lib.format, "_read_array_header", None)
    if impl is None:  # numpy >= 2: the implementation module
        from numpy.lib import _format_impl

        impl = _format_impl._read_array_header
    return impl(member, version)


def check_npz_members(path: Path, wanted: Sequence[str]) -> None:
    """Refuse, before anything is allocated, a member of ``wanted`` whose .npy header is garbage, or declares a
    shape whose bytes (shape x itemsize) are not the bytes the member holds in the zip (a header claiming
    (10**12, 10**6) float32 in a 2 KB member), or arrays that do not fit in this machine's memory."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        for key in wanted:
            info = infos.get(f"{key}.npy") or infos.get(key)
            if info is None:
                continue
            where = f"{path}: member {key!r} ({info.filename})"
            with archive.open(info) as member:
                if member.read(len(NPY_MAGIC)) != NPY_MAGIC:
                    continue  # not an .npy: numpy hands back its bytes, refused below as not [N, D]
                member.seek(0)
                try:
                    version = np.lib.format.read_magic(member)
                    shape, _fortran, dtype = _read_npy_header(member, version)
                except (ValueError, SyntaxError, TypeError, OverflowError, EOFError) as err:
                    text = " ".join(str(err).split())[:160]
                    raise InputError(f"{where} has a corrupt .npy header ({type(err).__name__}: {text}); "
                                     "refused before reading its data") from None
                offset = member.tell()
            if dtype.hasobject:
                continue  # refused by np.load(allow_pickle=False) with its own message
            if any(not isinstance(n, int) or n < 0 for n in shape):
                raise InputError(f"{where} has a corrupt .npy header: shape {shape} has a negative size")
            declared = math.prod(shape) * dtype.itemsize
            held = info.file_size - offset
            if declared != held:
                raise InputError(
                    f"{where}: its .npy header declares shape {shape} {dtype} = {human_bytes(declared)}, but the "
                    f"member holds {human_bytes(held)} of data: a corrupt or forged header (refused before "
                    "allocating anything)")
            total += declared
    problem = memory_problem(total, f"{path}: reading {', '.join(wanted)}")
    if problem:
        raise InputError(problem)


def load_feature_dump(
    path: Path, *, required: Sequence[str] = ("feats",), optional: Sequence[str] = ID_KEYS
) -> dict[str, np.ndarray]:
    """The ``required`` and present ``optional`` arrays of one dump: finite numeric 2-D ``feats``,
    integer 1-D id arrays of matching length. Anything else raises InputError naming file and key."""
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a .npz file")
    if not path.exists():
        raise InputError(f"feature file not found: {path}")
    if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block the read, /dev/zero never end
        raise InputError(f"{path} is not a regular file (a FIFO, device or socket); give a .npz file (it was not "
                         "read)")
    wanted = (*required, *optional)
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04":  # np.savez writes a zip archive
        raise InputError(f"{path}: not an .npz archive (np.savez writes a zip file; this one starts with {magic!r})")
    try:
        check_npz_members(path, wanted)
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise InputError(f"{path}: not an .npz archive (np.savez writes one)")
        with data:
            files = list(data.files)
            out = {k: np.asarray(data[k]) for k in wanted if k in files}
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, MemoryError) as err:
        hint = "; truncated?" if isinstance(err, (EOFError, zipfile.BadZipFile)) else ""
        raise InputError(f"{path}: cannot read as .npz ({type(err).__name__}: {err}{hint})") from None
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
