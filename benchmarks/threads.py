"""Training speed of the demo against the CPU thread count, on an idle machine and while another process
keeps one core busy: which ``cpu_threads`` keeps at least half the idle speed under load.

For each thread count, a short demo run (``configs/demo.yaml``: a few pretrain and adaptation iterations,
no evaluation in between) is timed in its own process; the iterations per second are the median over
the adaptation iterations after the first two. "Busy": a second process spinning on one core, started
before the run and stopped after it.

    OMP_NUM_THREADS=1 python benchmarks/threads.py [--threads 1,2,0] [--iterations 12] [--out DIR | --publish]

``0`` is torch's default (as many threads as cores); ``-1`` is streamlabel's ``auto`` (all cores but one).
Writes ``threads.{json,md}`` into ``--out`` (default ``runs/benchmarks/``, git-ignored), or into the committed
``benchmarks/results/`` with ``--publish``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import (  # noqa: E402
    REPO,
    add_output_arguments,
    command_line,
    commit,
    machine,
    machine_line,
    output_dir,
    write,
    wrote,
)

SPIN = "while True:\n    pass\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2,0,-1", help="cpu_threads values to time")
    parser.add_argument("--iterations", type=int, default=12, help="adaptation iterations per run")
    add_output_arguments(parser, "threads")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def worker(threads: int, iterations: int, out: Path) -> None:
    """One short demo run in this process; writes the seconds of every adaptation iteration."""
    from streamlabel.engine.trainer import Trainer
    from streamlabel.launch import train as train_entry

    seconds: list[float] = []
    original = Trainer.run_step

    def timed(self, src, tgt, phase):
        start = time.perf_counter()
        try:
            return original(self, src, tgt, phase)
        finally:
            if phase.name == "adapt":
                seconds.append(time.perf_counter() - start)

    Trainer.run_step = timed
    with tempfile.TemporaryDirectory() as run_dir:
        overrides = [f"output_dir={run_dir}", f"cpu_threads={threads}", "train.pretrain_iterations=4",
                     f"train.iterations={iterations}", f"train.iters_per_epoch={iterations}",
                     "train.eval_every_epochs=0", "train.checkpoint_every_epochs=0", "log.tensorboard=false"]
        train_entry.run(argparse.Namespace(config=REPO / "configs" / "demo.yaml", overrides=overrides,
                                           resume=False, cpu=True, quiet=True))
    out.write_text(json.dumps(seconds))


def timed_run(threads: int, iterations: int, busy: bool) -> dict:
    """Iterations per second of one run, with or without a spinning process beside it."""
    spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if busy else None
    try:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            out = Path(tmp.name)
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # the run sets its own threads
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(threads),
                        "--worker-out", str(out), "--iterations", str(iterations)], check=True, cwd=REPO, env=env)
        seconds = json.loads(out.read_text())[2:]
        out.unlink()
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    median = statistics.median(seconds)
    return {"threads": threads, "busy": busy, "iterations_per_s": 1.0 / median, "median_s": median}


def to_markdown(payload: dict) -> str:
    lines = ["# Demo training speed against the CPU thread count", "",
             f"Commit `{payload['commit']}`. Machine: {machine_line(payload['machine'])}.",
             f"Command: `{payload['command']}`", "",
             "Iterations per second of the demo's adaptation (median after two warm-up iterations), idle and "
             "while a second process spins on one core. `cpu_threads` 0 = torch's default (one thread per "
             "core), -1 = streamlabel's auto (all cores but one).", "",
             "| cpu_threads | idle it/s | busy it/s | busy / idle |", "|---|---|---|---|"]
    for threads in payload["threads"]:
        idle = next(r for r in payload["rows"] if r["threads"] == threads and not r["busy"])
        busy = next(r for r in payload["rows"] if r["threads"] == threads and r["busy"])
        lines.append(f"| {threads} | {idle['iterations_per_s']:.2f} | {busy['iterations_per_s']:.2f} "
                     f"| {busy['iterations_per_s'] / idle['iterations_per_s']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.iterations, args.worker_out)
        return 0
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    rows = []
    for count in threads:
        for busy in (False, True):
            rows.append(timed_run(count, args.iterations, busy))
            print(f"threads: cpu_threads={count} {'busy' if busy else 'idle'}: "
                  f"{rows[-1]['iterations_per_s']:.2f} it/s", flush=True)
    payload = {"commit": commit(), "machine": machine(), "command": command_line(), "threads": threads,
               "rows": rows}
    json_path, md_path = write(output_dir(args), args.name, payload, to_markdown(payload))
    wrote("threads", json_path, md_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
