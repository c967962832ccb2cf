"""Mutation check of the online engine's tests: each mutant removes one behaviour the docs promise, and the
tests that guard it must fail.

Every mutant is one exact text replacement in one source file. The script copies ``streamlabel/``,
``tests/`` and ``configs/`` (plus ``pyproject.toml`` and ``conftest.py``) to a temporary folder, runs the
tests of each mutant there against the unmutated copy first (they must pass), then against each mutant
(``pytest -x``: the first failure kills it). A mutant whose text is no longer in its file is reported as
stale (the code moved: update ``MUTANTS``); ``tests/test_mutants_apply.py`` checks that none is.
Writes OUT/NAME.json and .md (NAME: ``--name``, default mutants; OUT: ``--out``, default
``runs/benchmarks/``, or ``benchmarks/results/`` with ``--publish``).

    OMP_NUM_THREADS=1 python benchmarks/mutants.py [--only NAME,NAME] [--out DIR | --publish]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import REPO, add_output_arguments, command_line, commit, machine, output_dir, write, wrote  # noqa: E402

TRACKING = "streamlabel/methods/hcd_tracking.py"
HCD_TESTS = ("tests/methods/test_hcd_tracking.py", "tests/methods/test_edge_merge.py",
             "tests/methods/test_hcd_policy.py", "tests/methods/test_market_subset.py")


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str  # the behaviour it removes
    path: str
    old: str
    new: str
    tests: tuple[str, ...] = HCD_TESTS


MUTANTS = (
    Mutant("no split in step", "level 0 = the mutual-link components inside step (initialize still splits)",
           TRACKING, "        if p.merge_only:\n            return roots",
           "        if p.merge_only or not fresh:\n            return roots"),
    Mutant("frozen labels", "step refreshes nothing: the bank moves, the labels stay",
           TRACKING, "        before = graph.idx[:, : p.link_k].clone()\n",
           "        return\n        before = graph.idx[:, : p.link_k].clone()\n"),
    Mutant("lost links not dirty", "samples whose k-NN links changed are not re-decided, only the moved rows",
           TRACKING, "        dirty = torch.cat([rows, _changed_link_ends(listed, before, after), "
                     "_changed_link_ends(listed, after, before)])",
           "        dirty = rows"),
    Mutant("no slack repair", "lists whose head lost a moved row are not searched afresh",
           TRACKING, "        if again.numel():\n            graph.refresh(again",
           "        if False:\n            graph.refresh(again", (*HCD_TESTS, "tests/methods/test_refresh_every.py")),
    Mutant("frozen merge floor", "merge: centroid keeps the first floor instead of following the bank",
           TRACKING, "            self.floor = float(kth.median()) if kth.numel() else 1.0",
           "            self.floor = getattr(self, 'floor', None) or (float(kth.median()) if kth.numel() else 1.0)"),
    Mutant("edge lists not refreshed", "step refreshes the link lists but not the cross-camera edge lists",
           TRACKING, "        if p.merge == \"edges\":\n            self._refresh_lists(p.graphs[1], rows, p.edge_k)\n",
           ""),
    Mutant("camera sets ignored", "merge: edges links units seen by exactly the same cameras",
           TRACKING, "share=p.edge_share,\n                                        camera_sets=sets)",
           "share=p.edge_share,\n                                        camera_sets=None)"),
    Mutant("centred view not updated", "step leaves the camera-centred rows of the moved samples as they were",
           TRACKING, "            self.view[rows] = camera_centred(",
           "            self.view[rows] = self.view[rows] if True else camera_centred("),
    Mutant("no eps tightening", "nplp / lbg keep a percolating eps (one giant cluster)",
           "streamlabel/methods/eps_tightening.py", "    while max_share < 1.0 and halvings",
           "    while False and halvings", ("tests/methods/test_eps_tightening.py",)),
    Mutant("rolling refresh blends", "train.rolling_refresh mixes fresh rows into the bank instead of replacing",
           "streamlabel/engine/rolling_refresh.py", "            bank.momentum = 0.0", "            pass",
           ("tests/training/test_rolling_refresh.py",)),
)
COPIED = ("streamlabel", "tests", "configs", "pyproject.toml", "conftest.py")


def stale(mutant: Mutant, root: Path = REPO) -> bool:
    """Whether the mutant's text is not in its file exactly once."""
    return (root / mutant.path).read_text().count(mutant.old) != 1


def run_tests(root: Path, tests: tuple[str, ...], *, stop_first: bool) -> tuple[bool, str, float]:
    """(passed, the last lines of pytest's output, seconds) of ``tests`` in the copy at ``root``."""
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(["-x"] if stop_first else []), *tests]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
    tail = [line for line in proc.stdout.splitlines() if line.strip()][-3:]
    return proc.returncode == 0, " / ".join(tail), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated mutant names (default: all)")
    add_output_arguments(parser, "mutants")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if args.only is None or m.name in args.only.split(",")]
    rows, survivors = [], 0
    with tempfile.TemporaryDirectory(prefix="streamlabel_mutants_") as tmp:
        root = Path(tmp)
        for name in COPIED:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
            elif source.is_file():
                shutil.copy2(source, root / name)
        for tests in dict.fromkeys(m.tests for m in chosen):  # the unmutated code passes first
            passed, tail, _ = run_tests(root, tests, stop_first=False)
            if not passed:
                print(f"mutants: the unmutated tests fail, nothing to measure: {tail}")
                return 1
        for mutant in chosen:
            path = root / mutant.path
            original = path.read_text()
            if stale(mutant, root):
                rows.append({"name": mutant.name, "what": mutant.what, "killed": None, "note": "stale: text not found"})
                survivors += 1
                continue
            path.write_text(original.replace(mutant.old, mutant.new))
            try:
                passed, tail, seconds = run_tests(root, mutant.tests, stop_first=True)
            finally:
                path.write_text(original)
            rows.append({"name": mutant.name, "what": mutant.what, "file": mutant.path, "tests": list(mutant.tests),
                         "killed": not passed, "pytest": tail, "seconds": seconds})
            survivors += int(passed)
            print(f"mutants: {mutant.name}: {'killed' if not passed else 'SURVIVED'} ({seconds:.0f} s)", flush=True)
    payload = {"commit": commit(), "command": command_line(), "machine": machine(), "rows": rows}
    lines = ["# Mutants of the online engine against its tests", "",
             f"Commit `{payload['commit']}`. Command: `{payload['command']}`", "",
             "Each mutant removes one behaviour; killed = at least one of its tests fails (pytest -x).", "",
             "| mutant | removes | tests | killed | pytest |", "|---|---|---|---|---|"]
    for r in rows:
        killed = "stale" if r["killed"] is None else ("yes" if r["killed"] else "**no**")
        tests = ", ".join(Path(t).name for t in r.get("tests", []))
        lines.append(f"| {r['name']} | {r['what']} | {tests} | {killed} | {r.get('pytest', r.get('note', ''))} |")
    wrote("mutants", *write(output_dir(args), args.name, payload, "\n".join(lines) + "\n"))
    return 1 if survivors else 0


if __name__ == "__main__":
    raise SystemExit(main())
