"""Load pretrained weights from a local file only (nothing is ever downloaded), with a key report.

Every file is read with ``torch.load(weights_only=True)``: a pickle that would build arbitrary objects or
call a function is refused before any of it runs (:func:`weights_only_refusal` says why, in words). A file
of the wrong kind (text, an ``.npz``, an empty file, a folder, a FIFO) or a state dict that does not fit the
model is a :class:`WeightsError` naming the file and what was expected.
"""

from __future__ import annotations

import logging
import pickle
import pickletools
import re
import stat
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["LoadReport", "WeightsError", "describe_state_mismatch", "load_model_state", "load_pretrained",
           "read_weight_file", "unpickler_detail", "weights_only_refusal"]

MAX_LISTED = 5  # mismatched / missing / unexpected keys named in one message (then a count)

_EXPECTED = ("a PyTorch state dict saved with torch.save (e.g. torchvision's 'resnet50-0676ba61.pth', or the "
             "'model' of a streamlabel checkpoint)")


class WeightsError(ValueError):
    """A weight file of the wrong kind, refused as unsafe, or whose tensors do not fit the model."""


# what torch's weights-only unpickler says when it refuses a file (torch 2.4 - 2.14), and that in words
_REFUSALS: tuple[tuple[str, str], ...] = (
    (r"Unsupported global: GLOBAL (\S+) was not an allowed global",
     "it names the global {0}, which is not on the safe loader's allow-list"),
    (r"unsupported GLOBAL (\S+) whose module (\S+) is blocked",
     "it calls {0} (module {1}: loading it would run system calls)"),
    (r"Trying to call reduce for unrecognized function (.+?)(?: which belongs to .*)?$",
     "loading it would call the function {0}"),
    (r"Can only create new object for .*? but got (.+)$", "loading it would create an object of {0}"),
    (r"Can only build .*? but got (.+)$", "loading it would build an object of {0}"),
    (r"(\S+) must be imported to load", "it holds objects of {0}, which a weight file never holds"),
)


_PICKLE_READ_LIMIT = 64 << 20  # bytes of a file's pickle read to tell a refused instruction from garbage


def _pickle_bytes(path: Path) -> bytes | None:
    """The pickle part of a torch file: ``data.pkl`` of a zip-format file, else the file's first bytes."""
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != b"PK\x03\x04":
                handle.seek(0)
                return handle.read(_PICKLE_READ_LIMIT)
        with zipfile.ZipFile(path) as archive:
            names = [i for i in archive.infolist() if i.filename.endswith("data.pkl")]
            if not names or names[0].file_size > _PICKLE_READ_LIMIT:
                return None
            return archive.read(names[0])
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError):
        return None


# the instructions through which a pickle names, calls or builds an object of its choosing
_OBJECT_OPS = frozenset({"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD",
                         "EXT1", "EXT2", "EXT4"})


def _well_formed_pickle_with(data: bytes, opnames: frozenset[str]) -> bool:
    """Whether ``data`` starts with well-formed pickles (parsed, never run), one of which uses an instruction
    of ``opnames``; text or random bytes that merely trip the safe loader are not."""
    position = 0
    while position < len(data):
        try:
            ops = list(pickletools.genops(data[position:]))
        except Exception:  # noqa: BLE001 - not a well-formed pickle: garbage, or the raw storage bytes
            return False
        if any(op.name in opnames for op, _, _ in ops):
            return True
        position += ops[-1][2] + 1  # past this pickle's STOP: a legacy file holds several in a row
    return False


def _genuine(path: Path | str | None, opnames: frozenset[str]) -> bool:
    """Whether the file at ``path`` (None: unknown, assumed so) is a well-formed pickle using ``opnames``."""
    if path is None:
        return True
    data = _pickle_bytes(Path(path))
    return data is not None and _well_formed_pickle_with(data, opnames)


def weights_only_refusal(exc: BaseException, path: Path | str | None = None) -> str | None:
    """Why ``torch.load(weights_only=True)`` refused a file, in words (which global, or that loading it would
    run code), when ``exc`` is such a refusal; None for any other error (a truncated or foreign file). With
    ``path``, an instruction the safe loader does not read counts as a refusal only when the file's pickle is
    well formed (random bytes trip over "unsupported" instructions too)."""
    if not isinstance(exc, pickle.UnpicklingError):
        return None
    text = str(exc)
    if "Weights only load failed" not in text and "WeightsUnpickler" not in text:
        return None
    lines = [line.strip() for line in text.splitlines()]
    for pattern, words in _REFUSALS:
        for line in lines:
            match = re.search(pattern, line)
            if match:
                if not _genuine(path, _OBJECT_OPS):
                    return None  # text or garbage whose first byte reads as GLOBAL: not a pickle at all
                return words.format(*(g.strip().rstrip(".") for g in match.groups()))
    operand = re.search(r"Unsupported operand (\d+)", text)
    if operand:
        code = int(operand.group(1))
        op = next((o for o in pickletools.opcodes if len(o.code) == 1 and ord(o.code) == code), None)
        if op is not None and not _genuine(path, frozenset({op.name})):
            return None  # garbage that happens to hold an opcode byte: corrupt, not unsafe
        if op is not None:
            return (f"its pickle uses the instruction {op.name} (opcode {code}, pickle protocol {op.proto}+), which "
                    "the safe loader does not execute (torch.save writes protocol 2; a pickle of arbitrary objects "
                    "uses it)")
        return None  # not a pickle instruction at all: the file is corrupt, not unsafe
    if not _genuine(path, _OBJECT_OPS):
        return None
    detail = unpickler_detail(exc)
    return f"the safe loader (torch.load weights_only=True) refused it{': ' + detail if detail else ''}"


def unpickler_detail(exc: BaseException) -> str:
    """The line of a weights-only load error that says what was found (torch wraps it in paragraphs of
    advice); the first sentence of any other error."""
    text = str(exc)
    if "Weights only load failed" not in text:
        return " ".join(text.split()).split(". ")[0].rstrip(".")[:200]
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines()]
    return next((line for line in lines if line and "Weights only load failed" not in line
                 and "weights_only" not in line and not line.startswith("Check the documentation")
                 and "PyTorch 2.6" not in line), "")[:200]


def _kind_of_bytes(head: bytes) -> str:
    """What a file that torch cannot read looks like, from its first bytes."""
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive not written by torch.save (an .npz?)"
    if head.startswith(b"\x93NUMPY"):
        return "a numpy .npy file"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (Keras?)"
    if head.startswith(b"\x08") or b"onnx" in head[:64].lower():
        return "an ONNX model? (use model.name: onnx with model.kwargs.path)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data torch cannot read"
    if all(c.isprintable() or c in "\r\n\t" for c in text):
        return "a text file"
    return "binary data torch cannot read"


def read_weight_file(path: Path, what: str = "weight file", *, map_location: object = "cpu") -> object:
    """``torch.load(path, weights_only=True)`` with a :class:`WeightsError` naming ``path`` and what was
    expected for anything that is not a safe PyTorch file: a folder, a FIFO or device (refused before it is
    opened), an empty file, text, an ``.npz``, a pickle of arbitrary objects (refused as unsafe: nothing in it
    runs). A missing file is a FileNotFoundError."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise
    except OSError as err:
        raise WeightsError(f"{what} {path} cannot be read: {err.strerror or err}") from None
    if stat.S_ISDIR(info.st_mode):
        raise WeightsError(f"{what} {path} is a folder; expected {_EXPECTED}")
    if not stat.S_ISREG(info.st_mode):
        raise WeightsError(f"{what} {path} is not a regular file (a FIFO, device or socket; it was not read); "
                           f"expected {_EXPECTED}")
    if info.st_size == 0:
        raise WeightsError(f"{what} {path} is empty (0 bytes); expected {_EXPECTED}")
    try:
        with path.open("rb"):
            pass
    except OSError as err:  # permission denied: the file's kind cannot be told, its access can
        raise WeightsError(f"{what} {path} cannot be read: {err.strerror or err}") from None
    try:
        with warnings.catch_warnings():  # the refusal below says it better than torch's protocol warning
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - every failure of a foreign file is reported the same way
        refusal = weights_only_refusal(err, path)
        if refusal:
            raise WeightsError(f"{what} {path} was refused as unsafe: {refusal}; it was not loaded (nothing in it "
                               f"ran). Expected {_EXPECTED}") from None
        try:
            with path.open("rb") as handle:
                head = handle.read(256)
        except OSError:
            head = b""
        kind = _kind_of_bytes(head)
        detail = f" ({type(err).__name__}: {unpickler_detail(err)})" if kind.startswith("binary") else ""
        raise WeightsError(f"{what} {path} is not a PyTorch weight file: it looks like {kind}{detail}; "
                           f"expected {_EXPECTED}") from None


def describe_state_mismatch(
    missing: list[str], unexpected: list[str], mismatched: list[tuple[str, tuple, tuple]], *,
    ours: str = "model", theirs: str = "file",
) -> str:
    """Keys missing, unexpected and of another shape, at most MAX_LISTED of each named, then a count."""

    def listed(items: list[str]) -> str:
        more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
        return ", ".join(items[:MAX_LISTED]) + more

    parts = []
    if mismatched:
        parts.append(f"{len(mismatched)} tensor(s) of another shape: " + listed(
            [f"{key}: {theirs} {tuple(got)} vs {ours} {tuple(want)}" for key, want, got in mismatched]))
    if missing:
        parts.append(f"{len(missing)} {ours} tensor(s) missing from the {theirs}: {listed(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} {theirs} tensor(s) the {ours} does not have: {listed(unexpected)}")
    return "; ".join(parts)


def load_model_state(model: nn.Module, state: object, source: str) -> None:
    """``model.load_state_dict(state)`` strictly, with a :class:`WeightsError` naming ``source`` and the
    parameters that are missing, unexpected or of another shape (both shapes) instead of torch's
    RuntimeError."""
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise WeightsError(f"{source}: expected a state dict (parameter name -> tensor), got {type(state).__name__}")
    own = model.state_dict()
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{source}: state dict entry {bad[0]!r} is a {type(state[bad[0]]).__name__}, not a tensor")
    mismatched = [(k, tuple(own[k].shape), tuple(v.shape)) for k, v in state.items()
                  if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if mismatched or missing or unexpected:
        raise WeightsError(f"{source} does not fit model {type(model).__name__}: "
                           + describe_state_mismatch(missing, unexpected, mismatched, theirs="checkpoint")
                           + " (was it written with other model.name / model.kwargs?)")
    model.load_state_dict(state)

_CONTAINER_KEYS = ("state_dict", "model", "model_state", "net")
_PREFIXES = ("module.", "backbone.", "base.", "encoder.")


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did: keys loaded, missing in the file, unexpected, shape mismatches."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"loaded {len(self.loaded)} tensors; missing {len(self.missing)}; "
            f"unexpected {len(self.unexpected)}; shape mismatch {len(self.mismatched)}"
        ]
        if self.missing:
            lines.append("  missing (kept at init): " + ", ".join(self.missing))
        if self.unexpected:
            lines.append("  unexpected (ignored): " + ", ".join(self.unexpected))
        for key, want, got in self.mismatched:
            lines.append(f"  shape mismatch (kept at init): {key}: model {want} vs file {got}")
        return "\n".join(lines)


def _unwrap(obj: object, path: object = "the file") -> dict[str, torch.Tensor]:
    """Find the tensor dict inside common checkpoint containers."""
    while isinstance(obj, dict):
        for key in _CONTAINER_KEYS:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
        else:
            break
    if not isinstance(obj, dict):
        raise WeightsError(f"weight file {path} holds a {type(obj).__name__}, not a state dict (a mapping of "
                           f"parameter names to tensors); expected {_EXPECTED}")
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _strip_prefixes(state: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes (``module.``, ``backbone.`` ...) when that makes more keys match."""
    for prefix in _PREFIXES:
        if any(k.startswith(prefix) for k in state):
            stripped = {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}
            if len(model_keys & stripped.keys()) > len(model_keys & state.keys()):
                state = stripped
    return state


def load_pretrained(
    model: nn.Module, path: str | Path, verbose: bool = True, *, strict_shapes: bool = False
) -> LoadReport:
    """Load a local state dict (torchvision ImageNet files included) into ``model``, non-strictly.

    Keys present in both with equal shapes are copied; everything else is listed in the returned
    :class:`LoadReport` (and logged). Raises ``FileNotFoundError`` when ``path`` does not exist, and
    :class:`WeightsError` for a file that is not a safe PyTorch state dict, one of whose tensors none
    fits the model, and (``strict_shapes``) one with a tensor of another shape than the model's.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"pretrained weights not found: '{path}'. Expected a local PyTorch state-dict file "
            "(e.g. torchvision's ImageNet 'resnet50-0676ba61.pth' or 'resnet50-11ad3fa6.pth', or an IBN-a "
            "'resnet50_ibn_a-d9d0bb7b.pth') saved with torch.save. streamlabel never downloads weights: "
            "copy the file to this path, or build the model without pretrained weights."
        )
    if path.suffix == ".onnx":
        raise ValueError(f"'{path}' is an ONNX file; use build_model('onnx', path=...) to import it")
    own = model.state_dict()
    state = _strip_prefixes(_unwrap(read_weight_file(path), path), set(own))
    if not state:
        raise WeightsError(f"weight file {path} holds no tensors; expected {_EXPECTED}")

    report = LoadReport()
    to_load = {}
    for key, tensor in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != tensor.shape:
            report.mismatched.append((key, tuple(own[key].shape), tuple(tensor.shape)))
        else:
            to_load[key] = tensor
            report.loaded.append(key)
    # BN batch counters are absent from older files (torchvision's included) and carry no weights.
    report.missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if own and not [k for k in report.loaded if not k.endswith("num_batches_tracked")]:
        raise WeightsError(f"weight file {path} has no tensor that fits model {type(model).__name__}: "
                           + describe_state_mismatch(report.missing, report.unexpected, report.mismatched)
                           + " (weights of another architecture or width?)")
    if strict_shapes and report.mismatched:
        raise WeightsError(f"weight file {path} does not fit model {type(model).__name__}: "
                           + describe_state_mismatch([], [], report.mismatched)
                           + " (written for other model.kwargs, e.g. feat_dim or width?)")
    model.load_state_dict(to_load, strict=False)
    if verbose:
        log.info("load_pretrained(%s): %s", path, report)
    return report
