"""`streamlabel compare`: one training run per label refresh interval, online vs offline (HCD Table 4).

``--refresh-every 0,1,2,3`` trains the same config once per interval n with ``policy.refresh_every=n``
(0 = labels updated every batch, n = the whole bank re-clustered every n epochs), each run in its own
``<output_dir>/refresh_every_<n>`` folder, one after the other in this process. The target mAP,
rank-1, pseudo-label BCubed F and wall time of every run go into a markdown table and a PNG plot in
``--out`` (default ``<output_dir>/compare``); extra ``key=value`` overrides apply to every run.
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
import sys
from pathlib import Path

from streamlabel.config.limits import MAX_ITERATIONS
from streamlabel.launch.arg_checks import output_folder, path_argument
from streamlabel.launch.errors import CommandError, InputError
from streamlabel.launch.packages import require, require_for_training
from streamlabel.launch.provenance import provenance

__all__ = ["add_arguments", "parse_intervals", "run"]

ROW_KEYS = ("refresh_every", "adapted_mAP", "adapted_rank1", "bcubed_f", "clusters", "outlier_frac", "seconds")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=path_argument, default=None, help="YAML config (default: configs/demo.yaml)")
    parser.add_argument("--refresh-every", default="0,1,2,3", metavar="N,N,...",
                        help="comma-separated refresh intervals in epochs (0 = online, every batch)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides applied to every run, e.g. train.iterations=100")
    parser.add_argument("--baseline", default=None, metavar="POLICY",
                        help="also train this policy once at its own defaults (e.g. spcl), as a reference row")
    parser.add_argument("--out", type=path_argument, default=None,
                        help="table and plot folder (default: <output_dir>/compare)")
    parser.add_argument("--resume", action="store_true", help="continue each run from its latest checkpoint")
    parser.add_argument("--cpu", action="store_true", help="force the CPU even when CUDA is available")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def parse_intervals(text: str) -> list[int]:
    """``"0,1,2,3"`` -> [0, 1, 2, 3]; distinct integers >= 0, else an InputError naming the bad item."""
    items = [item.strip() for item in str(text).split(",")]
    example = "e.g. --refresh-every 0,1,2,3 (0 = every batch, n = every n epochs)"
    if not any(items):
        raise InputError(f"--refresh-every is empty; give comma-separated integers >= 0, {example}")
    values: list[int] = []
    for item in items:
        try:
            value = int(item)
        except ValueError:
            raise InputError(f"--refresh-every: {item!r} is not an integer; {example}") from None
        if value < 0 or value > MAX_ITERATIONS:
            raise InputError(f"--refresh-every: {value} is outside [0, {MAX_ITERATIONS}]; {example}")
        if value in values:
            raise InputError(f"--refresh-every: {value} is listed twice")
        values.append(value)
    return values


def run(args: argparse.Namespace) -> dict:
    from streamlabel.engine.checkpoint import CheckpointError
    from streamlabel.engine.run_files import COMPARE_OUTPUTS
    from streamlabel.launch import train
    from streamlabel.launch.run_config import load_run_config

    intervals = parse_intervals(args.refresh_every)
    if args.baseline is not None and not args.baseline.strip():
        raise InputError("--baseline is empty; name a policy (e.g. spcl) or leave the flag out")
    config = args.config or train.default_config()
    cfg = load_run_config(config, args.overrides)  # bad overrides fail here, before any run starts
    if any(_key(item) == "policy.refresh_every" for item in args.overrides):
        raise CommandError("compare sets policy.refresh_every itself: give the intervals with --refresh-every")
    per_run = [item for item in args.overrides if _key(item) != "output_dir"]  # output_dir is the base folder
    require("matplotlib", "the plot of streamlabel compare")  # before the runs, not after them
    require_for_training(cfg)
    base_dir = Path(cfg["output_dir"]).expanduser()
    out_dir = output_folder(args.out or base_dir / "compare", "--out", train.data_roots(cfg))
    try:
        COMPARE_OUTPUTS.refuse_foreign(out_dir)
    except FileExistsError as err:
        raise CommandError(str(err)) from err
    runs = [(cfg["policy"]["name"], n, [f"policy.refresh_every={n}"]) for n in intervals]
    if args.baseline:
        # an unknown name fails now
        load_run_config(config, [*per_run, f"policy={{name: {args.baseline}}}"])
        runs.append((args.baseline, None, [f"policy={{name: {args.baseline}}}"]))
    run_dirs = [base_dir / (f"refresh_every_{n}" if n is not None else f"baseline_{policy}")
                for policy, n, _ in runs]
    for run_dir in run_dirs:  # every run folder is checked before the first run starts
        train.check_run_folder(run_dir, args.resume, inputs=train.data_roots(cfg))
    train.check_generated_datasets(cfg)
    rows = []
    for (policy, n, extra), run_dir in zip(runs, run_dirs, strict=True):
        print(f"[streamlabel compare] policy {policy} refresh_every={n if n is not None else 'default'} -> "
              f"{run_dir}", flush=True)
        run_args = argparse.Namespace(config=config, resume=args.resume, cpu=args.cpu, quiet=args.quiet,
                                      overrides=[*per_run, *extra, f"output_dir={run_dir}"])
        try:
            results = train.run(run_args)
        except CheckpointError as err:
            raise CommandError(f"{policy} refresh_every={n}: {err}") from err
        row = {key: results.get(key) for key in ROW_KEYS[1:]}
        epochs = [{k: h.get(k) for k in ("epoch", "bcubed_f", "bcubed_p", "eval_mAP")}
                  for h in results.get("history", [])]
        if epochs:  # the last epoch is scored by the final evaluation
            epochs[-1]["eval_mAP"] = results.get("adapted_mAP")
        rows.append({"policy": policy, "refresh_every": n, **row, "epochs": epochs, "output_dir": str(run_dir)})
    command = _command_line(args, config)
    table = markdown_table(rows, policy=cfg["policy"]["name"], command=command)
    COMPARE_OUTPUTS.write(out_dir, "table.md", table.encode())
    COMPARE_OUTPUTS.write(out_dir, "rows.json", (json.dumps(rows, indent=2, default=float) + "\n").encode())
    COMPARE_OUTPUTS.write(out_dir, "provenance.json", (json.dumps(provenance(command), indent=2) + "\n").encode())
    image = io.BytesIO()
    plot_rows(rows, image, title=f"{cfg['policy']['name']}: {Path(config).name}")
    plot = COMPARE_OUTPUTS.write(out_dir, "compare.png", image.getvalue())
    print(table)
    return {"policy": cfg["policy"]["name"], "rows": rows, "table": str(out_dir / "table.md"), "plot": str(plot),
            "command": command}


def interval_name(n: int) -> str:
    """How the labels are updated at interval ``n``."""
    return "every batch (online)" if n == 0 else f"every {n} epoch{'s' if n > 1 else ''}"


def markdown_table(rows: list[dict], *, policy: str, command: str) -> str:
    """The runs as a markdown table (percentages for mAP and rank-1), with the command that made it."""
    lines = [f"Policy `{policy}`, labels refreshed at different intervals (the analogue of HCD Table 4).", "",
             f"Command: `{command}`", "",
             "| refresh_every | labels updated | mAP (%) | rank-1 (%) | BCubed F | clusters | outliers (%) "
             "| wall time (s) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if row["refresh_every"] is None:  # the baseline policy at its own defaults
            lines.append(f"| {row['policy']} (its default) | its own refresh "
                         f"| {_fmt(row['adapted_mAP'], 100, 1)} | {_fmt(row['adapted_rank1'], 100, 1)} "
                         f"| {_fmt(row['bcubed_f'], 1, 3)} | {_fmt(row['clusters'], 1, 0)} "
                         f"| {_fmt(row['outlier_frac'], 100, 1)} | {_fmt(row['seconds'], 1, 0)} |")
            continue
        lines.append(f"| {row['refresh_every']} | {interval_name(row['refresh_every'])} "
                     f"| {_fmt(row['adapted_mAP'], 100, 1)} | {_fmt(row['adapted_rank1'], 100, 1)} "
                     f"| {_fmt(row['bcubed_f'], 1, 3)} | {_fmt(row['clusters'], 1, 0)} "
                     f"| {_fmt(row['outlier_frac'], 100, 1)} | {_fmt(row['seconds'], 1, 0)} |")
    return "\n".join(lines) + "\n"


def plot_rows(rows: list[dict], path: Path | io.BytesIO, *, title: str) -> Path | io.BytesIO:
    """mAP / rank-1, BCubed F and wall time against the refresh interval, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [run_name(r) for r in rows]
    x = list(range(len(rows)))
    fig, grid = plt.subplots(2, 3, figsize=(11, 6.8))
    axes = grid[0]
    axes[0].plot(x, [100 * _num(r["adapted_mAP"]) for r in rows], "o-", label="mAP")
    axes[0].plot(x, [100 * _num(r["adapted_rank1"]) for r in rows], "s--", label="rank-1")
    axes[0].set_ylabel("target retrieval (%)")
    axes[0].legend()
    axes[1].plot(x, [_num(r["bcubed_f"]) for r in rows], "o-", color="tab:green")
    axes[1].set_ylabel("pseudo-label BCubed F")
    axes[2].bar(x, [_num(r["seconds"]) for r in rows], color="tab:gray")
    axes[2].set_ylabel("wall time (s)")
    for ax in axes:
        ax.set_xticks(x, names)
        ax.set_xlabel("refresh_every (epochs)")
        ax.grid(alpha=0.3)
    for row, name in zip(rows, names, strict=True):  # the curves over the epochs of every run
        epochs = [e for e in row.get("epochs", []) if e["epoch"] >= 0]
        grid[1][0].plot([e["epoch"] + 1 for e in epochs], [100 * _num(e["eval_mAP"]) for e in epochs], "o-",
                        label=name)
        grid[1][1].plot([e["epoch"] + 1 for e in row.get("epochs", [])],
                        [_num(e["bcubed_f"]) for e in row.get("epochs", [])], "o-", label=name)
    grid[1][0].set_ylabel("val mAP (%) after the epoch")
    grid[1][1].set_ylabel("pseudo-label BCubed F (0 = first labels)")
    for ax in grid[1][:2]:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    grid[1][2].axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def run_name(row: dict) -> str:
    """Short name of a run in the plot: online, the interval, or the baseline policy."""
    if row["refresh_every"] is None:
        return row["policy"]
    return "online" if row["refresh_every"] == 0 else str(row["refresh_every"])


def _num(value: object) -> float:
    return float("nan") if value is None else float(value)


def _fmt(value: object, scale: float, digits: int) -> str:
    return "n/a" if value is None else f"{scale * float(value):.{digits}f}"


def _command_line(args: argparse.Namespace, config: Path) -> str:
    parts = ["streamlabel", "compare", "--config", str(config), "--refresh-every", str(args.refresh_every)]
    parts += ["--baseline", args.baseline] if args.baseline else []
    parts += [*(["--cpu"] if args.cpu else []), *args.overrides]
    return " ".join(shlex.quote(p) for p in parts)


if __name__ == "__main__":
    from streamlabel.launch.cli import main

    sys.exit(main(["compare", *sys.argv[1:]]))


def _key(override: str) -> str:
    return override.partition("=")[0].strip()
