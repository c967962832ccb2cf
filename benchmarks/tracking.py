"""Do the labels follow the features? The tracking probe (streamlabel/evaluation/tracking_probe.py) on real
embeddings (default: the CUHK03 train and val embeddings and, when benchmarks/market_dumps.sh has made it, the
Market-1501 train dump).

Arms: online (``refresh_every = 0``, ``epoch_end`` after each pass), online step only (no ``epoch_end`` at all:
what ``step`` alone keeps), offline (``refresh_every = 1``). Probes, each for every dump and every ``dynamics``
preset of the hcd policy:
- ``toward t``: features moved a share t toward their identity mean (a network that learns), streamed for
  ``--passes`` passes; tracking gap = F(fresh initialize on the moved features) - F(streamed labels);
- ``same``: the initial features streamed again for ``--stability-passes`` passes (F must not fall);
- ``noise s``: Gaussian noise of norm s added (a network that gets worse): the labels must not collapse.

    OMP_NUM_THREADS=1 python benchmarks/tracking.py [--features A.npz B.npz] [--shares 0.15,0.3,0.5]
        [--passes 2] [--dynamics tracking,paper] [--noise 0.5] [--out DIR | --publish] [--threads 1]

Without ``../shared`` (the default dumps) it says so and exits 0. Writes ``tracking.json`` and ``tracking.md`` into
``--out`` (default ``runs/benchmarks/``, git-ignored), or into the committed ``benchmarks/results/`` with
``--publish``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import (  # noqa: E402
    CUHK03_FILES,
    add_output_arguments,
    command_line,
    commit,
    machine,
    machine_line,
    output_dir,
    write,
    wrote,
)

from streamlabel.evaluation.tracking_probe import toward_identity_means, track, with_noise  # noqa: E402

MARKET_TRAIN = Path(__file__).resolve().parents[1] / "runs" / "dumps" / "market1501_train_osnet_x0_25_msmt17.npz"


def default_dumps() -> list[Path]:
    """The CUHK03 embeddings of ../shared, and the Market-1501 train dump where it has been made."""
    return [*CUHK03_FILES, *([MARKET_TRAIN] if MARKET_TRAIN.is_file() else [])]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, nargs="+", default=default_dumps(),
                        help="dumps with feats, pids, camids (default: CUHK03 train and val, Market-1501 train)")
    parser.add_argument("--shares", default="0.15,0.3,0.5", help="t values of the 'toward' probe")
    parser.add_argument("--passes", type=int, default=2, help="streaming passes of the moved features")
    parser.add_argument("--stability-passes", type=int, default=3, help="passes of the 'same' probe")
    parser.add_argument("--noise", type=float, default=0.5, help="noise norm of the 'noise' probe (0 = skip)")
    parser.add_argument("--dynamics", default="tracking,paper", help="hcd presets to run")
    parser.add_argument("--no-cameras", action="store_true", help="withhold the camera ids from the policy")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    add_output_arguments(parser, "tracking")
    return parser.parse_args(argv)


# (name, refresh_every, epoch_end between the passes): "online, step only" runs nothing but step between the
# stream and the check, so its labels are what the step itself keeps
ARMS = (("online", 0, True), ("online, step only", 0, False), ("offline", 1, True))


def run_dump(path: Path, args: argparse.Namespace, log) -> list[dict]:
    data = np.load(path)
    feats = torch.from_numpy(data["feats"]).float()
    pids = data["pids"]
    cams = None if args.no_cameras else torch.from_numpy(data["camids"]).long()
    rows = []
    for dynamics in [d.strip() for d in args.dynamics.split(",") if d.strip()]:
        probes = [(f"toward {t}", toward_identity_means(feats, pids, float(t)), args.passes)
                  for t in args.shares.split(",")]
        probes.append(("same", feats, args.stability_passes))
        if args.noise > 0:
            probes.append((f"noise {args.noise}", with_noise(feats, args.noise, args.seed), args.passes))
        for probe, moved, passes in probes:
            fresh_f = None
            for arm, refresh_every, epoch_end in ARMS:
                start = time.perf_counter()
                result = track(feats, moved, pids, cams, {"dynamics": dynamics, "refresh_every": refresh_every},
                               passes=passes, batch_size=args.batch_size, seed=args.seed, fresh_f=fresh_f,
                               epoch_end=epoch_end)
                fresh_f = result.fresh_f
                row = {"dump": path.name, "dynamics": dynamics, "probe": probe, "arm": arm, "passes": passes,
                       "start_f": result.start_f, "fresh_f": result.fresh_f, "streamed_f": result.streamed_f,
                       "gap": result.gap, "own_bank_f": result.own_bank_f, "own_bank_gap": result.own_bank_gap,
                       "start_clusters": result.start_clusters, "streamed_clusters": result.streamed_clusters,
                       "step_ms": result.step_ms, "seconds": time.perf_counter() - start}
                rows.append(row)
                log(f"{path.name} {dynamics} {probe} {arm}: start {row['start_f']:.3f} fresh {row['fresh_f']:.3f} "
                    f"streamed {row['streamed_f']:.3f} gap {row['gap']:+.3f} (own bank {row['own_bank_gap']:+.3f}) "
                    f"clusters {row['start_clusters']}->{row['streamed_clusters']}, {row['seconds']:.0f}s")
    return rows


def to_markdown(payload: dict) -> str:
    lines = ["# Tracking probe: do the labels follow the features?", "",
             f"Commit `{payload['commit']}`. Machine: {machine_line(payload['machine'])}.",
             f"Command: `{payload['command']}`", "",
             "BCubed F (outliers as singletons). *toward t*: every feature moved a share t toward its identity "
             "mean, streamed in shuffled batches of "
             f"{payload['batch_size']} (`epoch_end` after each pass; the offline arm re-clusters there); gap = fresh "
             "initialize on the moved features minus the streamed labels (arm *online, step only*: no `epoch_end` at "
             "all, only `step` between the stream and the check); *own bank* = the same against a fresh "
             "initialize on the streamed policy's bank (the dynamics' own error). *same*: the initial features "
             "streamed again (start F vs streamed F). *noise s*: isotropic noise of norm s added "
             f"(cameras {'withheld' if payload['no_cameras'] else 'given'}).", "",
             "| dump | dynamics | probe | arm | passes | start F | fresh F | streamed F | gap | gap (own bank) "
             "| clusters start -> streamed | step ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in payload["rows"]:
        lines.append(f"| {r['dump']} | {r['dynamics']} | {r['probe']} | {r['arm']} | {r['passes']} "
                     f"| {r['start_f']:.3f} | {r['fresh_f']:.3f} | {r['streamed_f']:.3f} | {r['gap']:+.3f} "
                     f"| {r['own_bank_gap']:+.3f} "
                     f"| {r['start_clusters']} -> {r['streamed_clusters']} | {r['step_ms']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    missing = [str(p) for p in args.features if not p.is_file()]
    if missing:
        print(f"tracking: feature dump(s) not found: {', '.join(missing)} (the default ones live in ../shared); "
              "nothing written")
        return 0
    rows = []
    for path in args.features:
        rows += run_dump(path, args, lambda msg: print(msg, flush=True))
    payload = {"commit": commit(), "machine": machine(), "command": command_line(), "batch_size": args.batch_size,
               "no_cameras": args.no_cameras, "rows": rows}
    json_path, md_path = write(output_dir(args), args.name, payload, to_markdown(payload))
    wrote("tracking", json_path, md_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
