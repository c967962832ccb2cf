"""Training entry point: ``accelerate launch -m streamlabel.launch.train --config FILE [key=value ...]``.

``streamlabel train`` runs the same code in the current process. With no ``--config`` the embedded
default ``configs/demo.yaml`` (synthetic source -> synthetic target, CPU, a few minutes) is used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from streamlabel.launch.arg_checks import DefaultsHelpFormatter, no_repeated_keys, output_folder
from streamlabel.launch.errors import CommandError
from streamlabel.launch.packages import require_for_training

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def default_config() -> Path:
    """``configs/demo.yaml`` of the source checkout (or of the current directory)."""
    for candidate in (REPO_CONFIGS / "demo.yaml", Path.cwd() / "configs" / "demo.yaml"):
        if candidate.is_file():
            return candidate
    raise CommandError("no --config given and configs/demo.yaml not found (run from the streamlabel checkout)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="YAML config (default: configs/demo.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.iterations=100")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of output_dir")
    parser.add_argument("--cpu", action="store_true", help="force the CPU even when CUDA is available")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    from streamlabel.engine.checkpoint import atomic_write
    from streamlabel.engine.trainer import Trainer
    from streamlabel.launch.run_config import load_run_config

    cfg = load_run_config(args.config or default_config(), args.overrides)
    require_for_training(cfg)
    check_run_folder(Path(cfg["output_dir"]), args.resume)
    threads = cpu_threads(cfg["cpu_threads"])
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    use_cpu = args.cpu or cfg["device"] == "cpu"
    if cfg["device"] == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CommandError("device: cuda requested but no CUDA device is available")
    amp = "fp16" if cfg["train"]["amp"] and not use_cpu else "no"
    project = ProjectConfiguration(project_dir=cfg["output_dir"], logging_dir=str(Path(cfg["output_dir"]) / "logs"))
    accelerator = Accelerator(cpu=use_cpu, mixed_precision=amp if _cuda_ok(use_cpu) else "no",
                              log_with="tensorboard" if cfg["log"]["tensorboard"] else None,
                              project_config=project)
    set_seed(cfg["seed"], device_specific=False)
    trainer = Trainer(cfg, accelerator, resume=args.resume, progress=not args.quiet)
    results = trainer.run()
    if accelerator.is_main_process:
        _print_summary(results)
        text = json.dumps(results, default=float, indent=1).encode()
        atomic_write(Path(cfg["output_dir"]) / "results.json", lambda handle: handle.write(text))
    return results if accelerator.is_main_process else {}


DIAGNOSTIC_KEYS = ("loss_trace", "labels_sha", "bank_sha", "bank_sum")  # run-to-run checks: results.json only


def json_view(results: dict) -> dict:
    """What the ``--json`` line shows: the results without the diagnostics that tests compare across runs
    (those stay in ``<output_dir>/results.json``)."""
    return {k: v for k, v in results.items() if k not in DIAGNOSTIC_KEYS}


def check_run_folder(out: Path, resume: bool) -> None:
    """Refuse before any work: an ``output_dir`` that is a file, or one whose checkpoints a fresh run
    would overwrite without a word."""
    output_folder(out, "output_dir")
    if not resume and any((out / "checkpoints").glob("*.pt")):
        raise CommandError(f"output_dir {out} already holds checkpoints of an earlier run: pass --resume to "
                           f"continue it, or choose another output_dir (or delete {out / 'checkpoints'})")


def cpu_threads(setting: int) -> int:
    """Intra-op threads for ``cpu_threads``: the value itself; -1 = all cores but one (another process keeps
    a core without slowing training by an order of magnitude); 0 = torch's default (returned as 0)."""
    if setting >= 0:
        return setting
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


def _cuda_ok(use_cpu: bool) -> bool:
    import torch

    return not use_cpu and torch.cuda.is_available()


def _print_summary(results: dict) -> None:
    parts = []
    if "source_mAP" in results:
        parts.append(f"source-only mAP {100 * results['source_mAP']:.1f}%")
    parts.append(f"adapted mAP {100 * results['adapted_mAP']:.1f}% rank-1 {100 * results['adapted_rank1']:.1f}%")
    if results.get("bcubed_f") is not None:
        parts.append(f"pseudo-label BCubed F {results['bcubed_f']:.3f}")
    parts.append(f"{results['seconds']:.0f} s")
    print("[streamlabel] " + ", ".join(parts))


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors reported as one line and exit status 2: bad config, data, checkpoint, a non-finite stop."""
    from streamlabel.data.errors import UnreadableImageError
    from streamlabel.engine.checkpoint import CheckpointError
    from streamlabel.engine.trainer import NonFiniteError

    return (CommandError, CheckpointError, UnreadableImageError, NonFiniteError, ValueError, KeyError,
            FileNotFoundError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streamlabel.launch.train", description=__doc__.splitlines()[0],
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    add_arguments(parser)
    args = parser.parse_intermixed_args(argv)  # key=value overrides may come before or after flags
    try:
        no_repeated_keys(args.overrides)
        results = run(args)
    except user_errors() as err:
        print(f"streamlabel train: error: {err}", file=sys.stderr)
        return 2
    if args.json and results:
        print(json.dumps(json_view(results), default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
