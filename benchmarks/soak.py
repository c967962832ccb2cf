"""Soak test of the online label engine: a long stream of ``step`` calls through ``hcd`` at a large N.

A synthetic identity mixture (N/10 identities, unit rows, D dims) initialises the ``hcd`` policy; then
``--rows`` rows are streamed through ``step`` in batches of ``--batch`` (shuffled passes over the bank,
each row a noisy copy of its original feature, ``epoch_end`` after every pass as the trainer does). Every
``--every`` steps it records the process RSS, the label-id high-water mark (largest raw cluster id ever
seen at any level: ids live in [0, N) and an emptied id is reused, so it must stay below N) and the
number of clusters, and checks the invariants:

* ``HierarchicalLabelBank.check_invariant`` (ids in range, sizes match labels, cluster preserve property);
* every bank row finite and of norm 1; the incrementally kept cluster sums equal a fresh recompute;
* ``labels()`` dense (0..C-1) and ``memory_entries()`` finite with one positive entry per sample.

Memory growth is the RSS at the end minus the lowest RSS recorded after the first full pass (allocator
warm-up and the first touch of every buffer happen before it; a leak grows from the lowest point, memory handed
back to the OS only lowers it); it must stay under ``--max-growth-mib``.

    OMP_NUM_THREADS=1 python benchmarks/soak.py [--n 100000] [--dim 128] [--batch 256] [--rows 1000000]
                                                [--every 100] [--init-rounds 1] [--out DIR | --publish]

Writes OUT/NAME.json and OUT/NAME.md (NAME: ``--name``, default soak; OUT: ``--out``, default ``runs/benchmarks/``,
git-ignored, or the committed ``benchmarks/results/`` with ``--publish``); exit status 1 when an invariant or the
memory check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from streamlabel.methods import build_policy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import add_output_arguments, output_dir, wrote  # noqa: E402


def rss_mib() -> float:
    """Resident set size of this process in MiB (Linux /proc; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def identity_mixture(n: int, dim: int, seed: int) -> torch.Tensor:
    """[n, dim] unit rows: n/10 identity directions, each sample its identity plus isotropic noise."""
    gen = torch.Generator().manual_seed(seed)
    num_ids = max(2, n // 10)
    centres = F.normalize(torch.randn(num_ids, dim, generator=gen), dim=1)
    owner = torch.randperm(n, generator=gen) % num_ids
    noise = F.normalize(torch.randn(n, dim, generator=gen), dim=1)
    return F.normalize(centres[owner] + 0.7 * noise, dim=1)


def check_invariants(policy, max_sum_error: float = 1e-3) -> dict[str, float]:
    """Raise AssertionError naming the broken invariant; returns the measured drift and sizes."""
    lb = policy.label_bank
    lb.check_invariant()
    bank = policy.bank.features.float()
    assert bool(torch.isfinite(bank).all()), "feature bank holds NaN/Inf"
    norm_error = float((bank.norm(dim=1) - 1).abs().max())
    assert norm_error < 1e-3, f"bank rows not unit norm (max error {norm_error:.2e})"
    sum_error = 0.0
    for level in range(lb.num_levels):  # one level at a time, the bank itself untouched
        fresh = torch.zeros_like(lb.sums[level]).index_add_(0, lb.labels[level], bank)
        sum_error = max(sum_error, float((fresh - lb.sums[level]).abs().max()))
        del fresh
    assert sum_error < max_sum_error, f"incremental cluster sums drifted by {sum_error:.2e}"
    labels = policy.labels()
    clustered = labels[labels >= 0]
    clusters = int(clustered.max()) + 1 if clustered.numel() else 0
    assert clusters == torch.unique(clustered).numel(), "labels() is not dense"
    entries, positive = policy.memory_entries()
    assert bool(torch.isfinite(entries).all()), "memory entries hold NaN/Inf"
    assert positive.shape == labels.shape and int(positive.max()) < entries.shape[0], "bad positive entries"
    return {"sum_error": sum_error, "norm_error": norm_error, "clusters": clusters,
            "alive_ids": [lb.num_clusters(level) for level in range(lb.num_levels)],
            "outlier_frac": float((labels < 0).float().mean())}


def soak(n: int, dim: int, batch: int, steps: int, every: int, *, seed: int = 0, dynamics: str = "tracking",
         init_rounds: int = 1, noise: float = 0.15, log=print) -> dict:
    """Initialise ``hcd`` on a mixture, stream ``steps`` batches, record and check every ``every`` steps
    (``init_rounds``: the paper dynamics' rounds at init)."""
    feats = identity_mixture(n, dim, seed)
    params = {"init_rounds": init_rounds} if dynamics == "paper" else {}
    policy = build_policy("hcd", num_samples=n, feat_dim=dim, dynamics=dynamics, seed=seed, **params)
    start = time.perf_counter()
    policy.initialize(feats)
    init_seconds = time.perf_counter() - start
    gen = torch.Generator().manual_seed(seed + 1)
    order, cursor, passes = torch.randperm(n, generator=gen), 0, 0
    high_water = int(policy.label_bank.labels.max())
    curve: list[dict] = []
    first_check = check_invariants(policy)
    curve.append({"step": 0, "rss_mib": rss_mib(), "id_high_water": high_water, **first_check, "seconds": 0.0})
    log(f"init {init_seconds:.1f} s, {first_check['clusters']} clusters, RSS {curve[0]['rss_mib']:.0f} MiB")
    stream_start = time.perf_counter()
    for step in range(1, steps + 1):
        if cursor + batch > n:  # a pass is over: reshuffle, and the trainer's epoch end
            policy.epoch_end(passes)
            order, cursor, passes = torch.randperm(n, generator=gen), 0, passes + 1
        rows = order[cursor:cursor + batch]
        cursor += batch
        moved = F.normalize(feats[rows] + noise * F.normalize(torch.randn(rows.numel(), dim, generator=gen), dim=1),
                            dim=1)
        policy.step(rows, moved)
        high_water = max(high_water, int(policy.label_bank.labels.max()))
        if step % every == 0 or step == steps:
            checked = check_invariants(policy)
            point = {"step": step, "rss_mib": rss_mib(), "id_high_water": high_water, **checked,
                     "seconds": time.perf_counter() - stream_start}
            curve.append(point)
            log(f"step {step}/{steps} ({step * batch:,} rows): RSS {point['rss_mib']:.0f} MiB, id high-water "
                f"{high_water}, {checked['clusters']} clusters, {point['seconds']:.0f} s")
    return {"init_seconds": init_seconds, "stream_seconds": time.perf_counter() - stream_start, "passes": passes,
            "curve": curve}


def memory_verdict(curve: list[dict], steps_per_pass: int, max_growth_mib: float) -> dict:
    """RSS growth after the first full pass: end minus the lowest point since (a leak grows from there; memory
    handed back to the OS lowers it), and the slope of RSS over the second half of the run."""
    warm = next((p for p in curve if p["step"] >= steps_per_pass), curve[-1])
    after = [p for p in curve if p["step"] >= warm["step"]]
    low = min(p["rss_mib"] for p in after)
    growth = curve[-1]["rss_mib"] - low
    half = [p for p in curve if p["step"] >= curve[-1]["step"] / 2]
    slope = 0.0
    if len(half) >= 2 and half[-1]["step"] > half[0]["step"]:
        xs = [p["step"] for p in half]
        ys = [p["rss_mib"] for p in half]
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mean_x) ** 2 for x in xs)
    return {"warm_step": warm["step"], "warm_rss_mib": warm["rss_mib"], "low_rss_mib": low,
            "high_rss_mib": max(p["rss_mib"] for p in after), "end_rss_mib": curve[-1]["rss_mib"],
            "growth_mib": growth, "slope_mib_per_1000_steps": 1000 * slope, "max_growth_mib": max_growth_mib,
            "ok": growth <= max_growth_mib}


def write_markdown(result: dict, path: Path, points: int = 12) -> None:
    """soak.md: settings, verdicts and the RSS / id curve at about ``points`` evenly spaced records."""
    a, mem = result["args"], result["memory"]
    curve = result["curve"]
    stride = max(1, math.ceil(len(curve) / points))
    shown = curve[::stride] + ([curve[-1]] if (len(curve) - 1) % stride else [])
    lines = [
        "# Soak: the `hcd` policy under a long stream of `step` calls",
        "",
        f"Machine: {result['machine']}; torch {result['torch']}, {a['threads']} thread(s), CPU.",
        f"N = {a['n']:,}, D = {a['dim']}, B = {a['batch']} rows per step, {a['steps']:,} steps = "
        f"{a['steps'] * a['batch']:,} rows ({result['passes']} passes over the bank), dynamics "
        f"{a['dynamics']}" + (f" (init_rounds = {a['init_rounds']})" if a["dynamics"] == "paper" else "")
        + f", noise {a['noise']}; checks every {a['every']} steps. "
        f"Command: `{result['command']}`.",
        "",
        f"- init {result['init_seconds']:.0f} s, stream {result['stream_seconds']:.0f} s "
        f"({1000 * result['stream_seconds'] / a['steps']:.0f} ms per step, checks included)",
        f"- invariants: {'all held' if result['invariants_ok'] else 'BROKEN: ' + result['failure']} at "
        f"{len(curve)} checks (label bank, unit rows, sums = recompute within {result['max_sum_error']:.1e}, "
        "dense labels, finite memory entries)",
        f"- memory: RSS {mem['warm_rss_mib']:.0f} MiB after the first pass (step {mem['warm_step']}), between "
        f"{mem['low_rss_mib']:.0f} and {mem['high_rss_mib']:.0f} MiB from there on, {mem['end_rss_mib']:.0f} MiB at "
        f"the end: growth over the lowest point {mem['growth_mib']:+.1f} MiB (limit {mem['max_growth_mib']:.0f}), "
        f"slope over the second half {mem['slope_mib_per_1000_steps']:+.2f} MiB per 1000 steps: "
        f"{'no growth' if mem['ok'] else 'GROWS'}",
        f"- label ids: raw id high-water mark {result['id_high_water']:,} (bound N - 1 = {a['n'] - 1:,}; the "
        f"bootstrap already uses ids up to there); ids in use per level (finest first) "
        f"{curve[0]['alive_ids']} after init, at most {result['alive_high_water']} during the stream, "
        f"{curve[-1]['alive_ids']} at the end; clusters of `labels()` {curve[0]['clusters']:,} after init, "
        f"{curve[-1]['clusters']:,} at the end",
        "",
        "| step | rows streamed | RSS MiB | id high-water | clusters | outliers | max sum drift | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in shown:
        lines.append(f"| {p['step']:,} | {p['step'] * a['batch']:,} | {p['rss_mib']:.0f} | {p['id_high_water']:,} | "
                     f"{p['clusters']:,} | {100 * p['outlier_frac']:.1f}% | {p['sum_error']:.1e} | "
                     f"{p['seconds']:.0f} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="bank size N")
    parser.add_argument("--dim", type=int, default=128, help="feature dimension D")
    parser.add_argument("--batch", type=int, default=256, help="rows per step B")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to stream in all (steps = rows / B)")
    parser.add_argument("--steps", type=int, default=None, help="number of steps (overrides --rows)")
    parser.add_argument("--every", type=int, default=100, help="record and check every this many steps")
    parser.add_argument("--dynamics", default="tracking", choices=("tracking", "paper"), help="hcd rule set")
    parser.add_argument("--init-rounds", type=int, default=1, help="paper dynamics: rounds at init")
    parser.add_argument("--noise", type=float, default=0.15, help="noise added to a row each time it is streamed")
    parser.add_argument("--max-growth-mib", type=float, default=64.0, help="allowed RSS growth after one pass")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    add_output_arguments(parser, "soak")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = args.steps if args.steps is not None else math.ceil(args.rows / args.batch)
    result: dict = {"machine": f"{platform.processor() or platform.machine()} ({os.cpu_count()} CPUs)",
                    "torch": torch.__version__, "command": "python benchmarks/soak.py " + " ".join(sys.argv[1:]),
                    "args": {**{k: v for k, v in vars(args).items() if k not in ("out", "publish")}, "steps": steps}}
    try:
        run = soak(args.n, args.dim, args.batch, steps, args.every, seed=args.seed, dynamics=args.dynamics,
                   init_rounds=args.init_rounds, noise=args.noise)
        result.update(run, invariants_ok=True, failure="")
    except AssertionError as err:  # the label bank's InvariantError is one too
        result.update(invariants_ok=False, failure=str(err), curve=[], passes=0, init_seconds=0, stream_seconds=0)
        print(f"soak: invariant broken: {err}", file=sys.stderr)
        return 1
    result["max_sum_error"] = 1e-3
    result["id_high_water"] = max(p["id_high_water"] for p in result["curve"])
    result["alive_high_water"] = [max(p["alive_ids"][h] for p in result["curve"]) for h in
                                  range(len(result["curve"][0]["alive_ids"]))]
    result["memory"] = memory_verdict(result["curve"], math.ceil(args.n / args.batch), args.max_growth_mib)
    out = output_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{args.name}.json", out / f"{args.name}.md"
    json_path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    write_markdown(result, md_path)
    print(md_path.read_text(encoding="utf-8"))
    wrote("soak", json_path, md_path)
    ok = result["memory"]["ok"] and result["id_high_water"] < args.n
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
