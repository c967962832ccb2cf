"""The four assertions of a refused command (tests/reliability/test_config_files.py and its siblings):
exit status 2, one ``streamlabel <command>: error: ...`` line naming the cause, no traceback, and no file
changed under the watched folders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamlabel.launch import cli
from tests.reliability.fs_snapshot import tree_digest


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Paths added, removed or changed between two ``tree_digest`` snapshots."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def refused(args: list[str], capsys: pytest.CaptureFixture, pattern: str, *watched: Path) -> str:
    """Run ``streamlabel ARGS`` in this process; assert exit 2, one error line matching ``pattern``, no
    traceback and no change under any of ``watched``. Returns the line."""
    capsys.readouterr()  # what earlier steps printed is not this command's
    before = [tree_digest(folder) for folder in watched]
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"streamlabel {args[0]}: error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    for folder, snapshot in zip(watched, before, strict=True):
        assert changed(snapshot, tree_digest(folder)) == [], folder
    return lines[0]
