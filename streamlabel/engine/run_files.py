"""Fixed-name files a command writes into a folder (a run's ``config.yaml`` and ``results.json``; compare's
table and plot), and the proof that those already there are its own: a manifest beside them lists each with
its SHA-256.

A file of one of those names that the manifest does not prove ours (the user's own ``config.yaml`` in a
folder given as ``output_dir``, a table edited since) is never written over: the command stops before any
work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from streamlabel.data.owned_files import Manifest, describe_foreign, digest, read_json_meta
from streamlabel.engine.checkpoint import atomic_write

__all__ = ["COMPARE_OUTPUTS", "RUN_OUTPUTS", "OwnedOutputs", "refuse_foreign_run_files", "write_run_file"]


@dataclass(frozen=True)
class OwnedOutputs:
    """The fixed file ``names`` a command writes into a folder, proven by the manifest ``manifest_name``."""

    names: tuple[str, ...]
    manifest_name: str
    flag: str  # how the folder is named in messages

    def _manifest(self, folder: Path) -> Manifest:
        meta = read_json_meta(folder / self.manifest_name)
        ours = isinstance(meta, dict) and meta.get("format") == self.manifest_name
        return (Manifest.from_json(folder, meta.get("written")) if ours else None) or Manifest(folder)

    def foreign(self, folder: Path) -> list[Path]:
        """What stands at one of :attr:`names` in ``folder`` (or at the manifest's own name) that the manifest
        does not prove ours: a file of other content, a folder, a link, a FIFO."""
        manifest = self._manifest(folder)
        meta = folder / self.manifest_name
        found = [meta] if meta.is_symlink() or (meta.exists() and not meta.is_file()) else []
        for name in self.names:
            path = folder / name
            if (path.exists() or path.is_symlink()) and not manifest.proves(path):
                found.append(path)
        return found

    def refuse_foreign(self, folder: Path) -> None:
        """Stop (FileExistsError) when writing would replace a file in ``folder`` not proven ours."""
        for name in self.names:  # read-only by its modes: the user's statement, even to root
            path = folder / name
            if path.is_file() and not path.is_symlink() and not path.stat().st_mode & 0o222:
                raise FileExistsError(f"{self.flag} {folder}: {path} exists and is read-only; it would be "
                                      f"replaced: make it writable or choose another {self.flag}")
        foreign = self.foreign(folder)
        if foreign:
            raise FileExistsError(
                f"{self.flag} {folder} holds {describe_foreign(foreign)}, which streamlabel did not write (or which "
                f"changed since) and would overwrite: choose another {self.flag}")

    def write(self, folder: Path, name: str, data: bytes) -> Path:
        """Atomically write ``folder/name`` (one of :attr:`names`) and record its digest."""
        if name not in self.names:
            raise ValueError(f"{name!r} is not one of {', '.join(self.names)}")
        manifest = self._manifest(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / name, lambda handle: handle.write(data))
        manifest.files[name] = digest(data)
        text = json.dumps({"format": self.manifest_name, "written": manifest.to_json()}, indent=1).encode()
        atomic_write(folder / self.manifest_name, lambda handle: handle.write(text))
        return folder / name


RUN_OUTPUTS = OwnedOutputs(("config.yaml", "results.json"), ".streamlabel-run.json", "output_dir")
COMPARE_OUTPUTS = OwnedOutputs(("table.md", "rows.json", "provenance.json", "compare.png"),
                               ".streamlabel-compare.json", "--out")


def refuse_foreign_run_files(out: Path) -> None:
    """Stop (FileExistsError) when a run would write over a file in ``out`` it cannot prove its own."""
    RUN_OUTPUTS.refuse_foreign(out)


def write_run_file(out: Path, name: str, data: bytes) -> Path:
    """Atomically write the run file ``out/name`` and record its digest."""
    return RUN_OUTPUTS.write(out, name, data)
