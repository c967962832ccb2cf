"""Training runs whose numbers the README and docs quote: each config trained once, from scratch, in its own
process, and everything it measured written to ``train_runs.{json,md}``.

Per run: the commit, the config and overrides, the machine, the CPU threads, the wall time, the mAP /
rank-1 of the model before adaptation (source-only, or zero-shot when unsupervised) and after, and per
epoch the pseudo-label quality (BCubed P / R / F, clusters, outlier share) and the val mAP.

    OMP_NUM_THREADS=1 python benchmarks/train_runs.py [--configs configs/demo.yaml,configs/cpu_cuhk03.yaml]
        [--threads 1] [--seeds 0[,1,...]] [--out DIR | --publish] [--name train_runs] [--append] [key=value ...]

``key=value`` overrides go to every run (e.g. ``policy.dynamics=paper``). ``--append`` keeps the rows of
other configs (or other overrides) in OUT/NAME.json when it ends (so invocations on different configs can
run side by side); every row records its own commit and command,
so a file assembled from several invocations says which commit measured which row. A config whose
data is missing (``../shared``) is reported and skipped. ``--seeds`` trains each config once per seed
(the spread of the gain is reported).
OUT is ``--out`` (default ``runs/benchmarks/``, git-ignored), or the committed ``benchmarks/results/``
with ``--publish``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
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

DEFAULT_CONFIGS = "configs/demo.yaml,configs/cpu_cuhk03.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated config files")
    parser.add_argument("--threads", type=int, default=1, help="cpu_threads of every run")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds: one run per config and seed")
    add_output_arguments(parser, "train_runs")
    parser.add_argument("--append", action="store_true", help="keep the other configs' rows of OUT/NAME.json")
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "train_runs", help="run folders")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every run")
    return parser.parse_args(argv)


def train(config: str, overrides: list[str], threads: int, run_dir: Path) -> tuple[dict | None, str]:
    """One ``streamlabel train --json`` in a subprocess, in a fresh ``run_dir``; returns (its result, the tail
    of its output)."""
    shutil.rmtree(run_dir, ignore_errors=True)  # the benchmark owns its run folders: never resume an old run
    cmd = [sys.executable, "-m", "streamlabel.launch.train", "--config", config, "--json", "--quiet", "--cpu",
           f"cpu_threads={threads}", f"output_dir={run_dir}", *overrides]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    tail = (proc.stdout + proc.stderr)[-2000:]
    return (json.loads(lines[-1]) if proc.returncode == 0 and lines else None), tail


def row_of(config: str, overrides: list[str], seed: int, threads: int, result: dict, seconds: float,
           measured_at: str) -> dict:
    epochs = [{k: h.get(k) for k in ("epoch", "bcubed_p", "bcubed_r", "bcubed_f", "clusters", "outlier_frac",
                                     "eval_mAP", "eval_rank1")} for h in result.get("history", [])]
    if epochs:  # the last epoch is scored by the final evaluation
        epochs[-1]["eval_mAP"], epochs[-1]["eval_rank1"] = result["adapted_mAP"], result["adapted_rank1"]
    return {"config": config, "overrides": overrides, "seed": seed, "threads": threads, "wall_s": seconds,
            "commit": measured_at, "command": command_line(),
            "before_mAP": result.get("source_mAP"), "before_rank1": result.get("source_rank1"),
            "adapted_mAP": result["adapted_mAP"], "adapted_rank1": result["adapted_rank1"], "epochs": epochs}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def provenance_lines(payload: dict) -> list[str]:
    """The commit and command of the file, or of every row when the rows come from several invocations."""
    sources = {(r.get("commit", payload["commit"]), r.get("command", payload["command"])) for r in payload["rows"]}
    if len(sources) <= 1:
        return [f"Commit `{payload['commit']}`. Machine: {machine_line(payload['machine'])}.",
                f"Command: `{payload['command']}`"]
    lines = [f"Machine: {machine_line(payload['machine'])}. The rows come from several invocations:", ""]
    for r in payload["rows"]:
        lines.append(f"- {r['config']} {' '.join(r['overrides'])} (seed {r.get('seed', 0)}): commit "
                     f"`{r.get('commit', payload['commit'])}`, `{r.get('command', payload['command'])}`")
    return lines


def to_markdown(payload: dict) -> str:
    lines = ["# Training runs", "", *provenance_lines(payload), "",
             "mAP / rank-1 on the config's evaluation split (CUHK03: val, camera A query, B gallery; demo: the "
             "synthetic target). *before*: the model the adaptation starts from (source-only, or zero-shot when "
             "there is no source). Per epoch: the pseudo labels of the target train set against the true ids "
             "(BCubed, outliers as singletons) and the val mAP after that epoch; epoch -1 = the first labels.",
             "", "| config | overrides | seed | threads | wall s | before mAP / R1 | adapted mAP / R1 "
             "| label F first -> last |",
             "|---|---|---|---|---|---|---|---|"]
    for r in payload["rows"]:
        first = r["epochs"][0]["bcubed_f"] if r["epochs"] else None
        last = r["epochs"][-1]["bcubed_f"] if r["epochs"] else None
        lines.append(f"| {r['config']} | {' '.join(r['overrides']) or '-'} | {r.get('seed', 0)} | {r['threads']} "
                     f"| {r['wall_s']:.0f} "
                     f"| {_pct(r['before_mAP'])} / {_pct(r['before_rank1'])} "
                     f"| **{_pct(r['adapted_mAP'])}** / {_pct(r['adapted_rank1'])} | {_num(first)} -> {_num(last)} |")
    lines += gain_lines(payload["rows"])
    for r in payload["rows"]:
        lines += ["", f"## {r['config']} {' '.join(r['overrides'])} (seed {r.get('seed', 0)})", "",
                  "| epoch | BCubed P | R | F | clusters | outliers | val mAP |", "|---|---|---|---|---|---|---|"]
        for e in r["epochs"]:
            outliers = "-" if e["outlier_frac"] is None else f"{100 * e['outlier_frac']:.1f}%"
            lines.append(f"| {e['epoch']} | {_num(e['bcubed_p'])} | {_num(e['bcubed_r'])} | {_num(e['bcubed_f'])} "
                         f"| {e['clusters']} | {outliers} | {_pct(e['eval_mAP'])} |")
    return "\n".join(lines) + "\n"


def gain_lines(rows: list[dict]) -> list[str]:
    """Per config trained with several seeds: the gain adapted - before (mAP points), mean, spread, minimum."""
    lines = []
    for config in dict.fromkeys(r["config"] for r in rows):
        gains = [100 * (r["adapted_mAP"] - r["before_mAP"]) for r in rows
                 if r["config"] == config and r["before_mAP"] is not None]
        if len(gains) > 1:
            lines += ["", f"{config}: gain over {len(gains)} seeds {statistics.mean(gains):.1f} "
                          f"± {statistics.stdev(gains):.1f} mAP points (min {min(gains):.1f}, max {max(gains):.1f})"]
    return lines


def kept_rows(old: dict, configs: list[str], overrides: list[str]) -> list[dict]:
    """``--append``: the rows of an earlier payload that this invocation does not measure again (another
    config, or the same config with other overrides), each stamped with its own commit and command."""
    replaced = {(config, tuple(overrides)) for config in configs}
    return [{"commit": old["commit"], "command": old["command"], **r} for r in old["rows"]
            if (r["config"], tuple(r["overrides"])) not in replaced]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rows: list[dict] = []
    json_path = output_dir(args) / f"{args.name}.json"
    failed = 0
    for config, seed in [(c, s) for c in configs for s in seeds]:
        run_dir = args.runs_dir / f"{Path(config).stem}_seed{seed}"
        start = time.perf_counter()
        measured_at = commit()  # the code the run imports now: a commit made while it trains is not it
        print(f"train_runs: {config} seed {seed} {' '.join(args.overrides)} ...", flush=True)
        result, tail = train(config, [*args.overrides, f"seed={seed}"], args.threads, run_dir)
        if result is None:
            failed += 1
            print(f"train_runs: {config} failed:\n{tail}", flush=True)
            continue
        rows.append(row_of(config, args.overrides, seed, args.threads, result, time.perf_counter() - start,
                           measured_at))
        print(f"train_runs: {config}: mAP {_pct(rows[-1]['before_mAP'])} -> {_pct(rows[-1]['adapted_mAP'])} in "
              f"{rows[-1]['wall_s']:.0f} s", flush=True)
    if args.append and json_path.is_file():  # read at the end: invocations on other configs may run meanwhile
        rows = kept_rows(json.loads(json_path.read_text()), configs, args.overrides) + rows
    payload = {"commit": commit(), "machine": machine(), "command": command_line(), "rows": rows}
    wrote("train_runs", *write(output_dir(args), args.name, payload, to_markdown(payload)))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
