"""What every benchmark records beside its numbers: the commit, the machine, the command; where it writes
(``--out DIR`` / ``--publish``, see ``add_output_arguments``); and the writing of ``<name>.json`` + ``<name>.md``
into that folder."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"  # committed: the numbers README and docs quote (--publish)
RUNS = REPO / "runs" / "benchmarks"  # git-ignored: the default --out
DOCS = REPO / "docs"  # committed pages a benchmark also rewrites with --publish (labels_table.md)
SHARED = REPO.parent / "shared"
EMBEDDINGS = SHARED / "embeddings"
CUHK03_FILES = (EMBEDDINGS / "cuhk03p1_train_osnet_x0_25_msmt17.npz",
                EMBEDDINGS / "cuhk03p1_val_osnet_x0_25_msmt17.npz")


def commit() -> str:
    """The checked-out commit, with "+dirty" when tracked code differs from it (results and docs, which the
    benchmarks themselves rewrite, do not count). A copy of the tree without ``.git`` (a remote GPU
    machine) reports ``STREAMLABEL_COMMIT`` + "+copy", the commit the copy was sent from, when that
    variable is set."""
    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
            )
        except OSError:  # no git program
            return ""
        return done.stdout.strip()

    head = git("rev-parse", "HEAD")
    if not head:
        sent_from = os.environ.get("STREAMLABEL_COMMIT", "")
        return f"{sent_from}+copy" if sent_from else "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results", ":!docs")
    return head + ("+dirty" if changed else "")


def machine() -> dict:
    """CPU model, cores, memory, torch version and threads, load average at the start."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_average_at_start": os.getloadavg()[0], "memory_gib": round(memory, 1)}


def machine_line(info: dict) -> str:
    return (f"{info['cpu']} ({info['cpu_count']} cores, {info['memory_gib']} GiB), torch {info['torch']} with "
            f"{info['torch_threads']} thread(s), load average {info['load_average_at_start']:.1f} at the start")


def command_line() -> str:
    return " ".join(["python", *[arg if " " not in arg else repr(arg) for arg in sys.argv]])


def add_output_arguments(parser: argparse.ArgumentParser, name: str, publishes_also: str = "") -> None:
    """The output options every benchmark shares.

    ``--out DIR``: the folder to write into (default ``runs/benchmarks/`` under the repository, git-ignored, so a
    plain run never touches tracked files); ``--publish``: write into the committed ``benchmarks/results/``
    instead (and, for benchmarks that have one, also rewrite their page under ``docs/``); the two exclude each
    other. ``--name``: the file stem, default ``name``. ``publishes_also`` names what else ``--publish`` rewrites
    (for its help). ``output_dir(args)`` resolves the folder."""
    group = parser.add_argument_group("output")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=None, metavar="DIR",
                       help=f"output folder (default: {RUNS.relative_to(REPO)}/ under the repository, git-ignored)")
    where.add_argument("--publish", action="store_true",
                       help=f"write into the committed {RESULTS.relative_to(REPO)}/ (what README and docs quote) "
                            f"{f'and {publishes_also} ' if publishes_also else ''}instead of --out")
    group.add_argument("--name", default=name, help=f"output file stem, NAME.json / NAME.md (default: {name})")


def output_dir(args: argparse.Namespace) -> Path:
    """The folder a run writes into: ``benchmarks/results/`` with ``--publish``, else ``--out`` (default
    ``runs/benchmarks/``). Not created here."""
    if getattr(args, "publish", False):
        return RESULTS
    out = getattr(args, "out", None)
    return Path(out) if out is not None else RUNS


def wrote(script: str, *paths: Path) -> None:
    """The closing line of a run: where its files are."""
    shown = [str(Path(path).resolve()) for path in paths]
    print(f"{script}: wrote {', '.join(shown)}", flush=True)


def write(out_dir: Path, name: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    """Write ``name``.json and ``name``.md into ``out_dir`` (created); returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=1) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path
