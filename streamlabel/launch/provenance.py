"""Where a result came from: the code's commit (when run from a git checkout), versions, threads, time."""

from __future__ import annotations

import datetime
import platform
import subprocess
from pathlib import Path

import torch

import streamlabel

PACKAGE_ROOT = Path(streamlabel.__file__).resolve().parents[1]


def code_commit() -> str:
    """The commit of the checkout streamlabel runs from ("+dirty" when tracked code differs), or "unknown"."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=PACKAGE_ROOT, capture_output=True, text=True, check=False,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    head = git("rev-parse", "HEAD")
    if not head:
        return "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", "streamlabel") else "")


def provenance(command: str) -> dict:
    """What a results file records besides its numbers."""
    return {"commit": code_commit(), "command": command, "streamlabel": getattr(streamlabel, "__version__", "?"),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
