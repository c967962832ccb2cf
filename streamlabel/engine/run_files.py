"""The fixed-name files a run writes into its ``output_dir`` (``config.yaml``, ``results.json``) and the proof
that the ones already there are a run's own: ``.streamlabel-run.json`` lists each with its SHA-256.

A file of one of those names that the list does not prove ours (the user's own ``config.yaml`` in a folder
given as ``output_dir``, or one edited since) is never written over: the run stops before any work.
"""

from __future__ import annotations

import json
from pathlib import Path

from streamlabel.data.owned_files import Manifest, describe_foreign, digest
from streamlabel.engine.checkpoint import atomic_write

__all__ = ["RUN_FILES", "RUN_MANIFEST", "foreign_run_files", "refuse_foreign_run_files", "write_run_file"]

RUN_MANIFEST = ".streamlabel-run.json"
RUN_FILES = ("config.yaml", "results.json")
_FORMAT = "streamlabel-run-v1"


def _manifest(out: Path) -> Manifest:
    try:
        meta = json.loads((out / RUN_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    found = Manifest.from_json(out, meta.get("written")) if isinstance(meta, dict) and \
        meta.get("format") == _FORMAT else None
    return found or Manifest(out)


def foreign_run_files(out: Path) -> list[Path]:
    """The files of :data:`RUN_FILES` present in ``out`` that no run of streamlabel wrote (or that changed)."""
    return _manifest(out).foreign_files([out / name for name in RUN_FILES])


def refuse_foreign_run_files(out: Path) -> None:
    """Stop (FileExistsError) when a run would write over a file in ``out`` it cannot prove its own."""
    foreign = foreign_run_files(out)
    if foreign:
        raise FileExistsError(
            f"output_dir {out} holds {describe_foreign(foreign)}, which streamlabel did not write (or which changed "
            f"since); a run would write over it: choose another output_dir")


def write_run_file(out: Path, name: str, data: bytes) -> Path:
    """Atomically write ``out/name`` (one of :data:`RUN_FILES`) and record its digest in the run manifest."""
    if name not in RUN_FILES:
        raise ValueError(f"{name!r} is not a run file ({', '.join(RUN_FILES)})")
    manifest = _manifest(out)
    atomic_write(out / name, lambda handle: handle.write(data))
    manifest.files[name] = digest(data)
    text = json.dumps({"format": _FORMAT, "written": manifest.to_json()}, indent=1).encode()
    atomic_write(out / RUN_MANIFEST, lambda handle: handle.write(text))
    return out / name
