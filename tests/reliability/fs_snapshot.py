"""What a folder tree holds, to show a command changed nothing outside its named outputs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

FOLDER = "<folder>"
LINK = "<link>"


def tree_digest(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root`` (folders and links recorded too), leaving out
    the relative paths in ``skip`` and everything under them. A missing root is an empty dict."""
    root = Path(root)
    digest: dict[str, str] = {}
    if not root.exists():
        return digest
    for folder, dirs, files in os.walk(root):
        base = Path(folder)
        for name in sorted(dirs + files):
            path = base / name
            rel = path.relative_to(root).as_posix()
            if any(rel == s or rel.startswith(s.rstrip("/") + "/") for s in skip):
                continue
            if path.is_symlink():
                digest[rel] = f"{LINK}{os.readlink(path)}"
            elif path.is_dir():
                digest[rel] = FOLDER
            elif not path.is_file():  # a FIFO, socket or device: never opened (a FIFO would block)
                digest[rel] = f"<special {path.stat().st_mode:o}>"
            else:
                try:
                    digest[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
                except OSError as err:  # a FIFO or an unreadable file: recorded by kind
                    digest[rel] = f"<unreadable {err.errno}>"
    return digest
