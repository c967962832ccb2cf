"""Training entry point: ``accelerate launch -m streamlabel.launch.train --config FILE [key=value ...]``.

``streamlabel train`` runs the same code in the current process. With no ``--config`` the embedded
default ``configs/demo.yaml`` (synthetic source -> synthetic target, CPU, a few minutes) is used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from streamlabel.launch.arg_checks import DefaultsHelpFormatter, no_repeated_keys, output_folder, path_argument
from streamlabel.launch.errors import CommandError, Interrupted, error_message
from streamlabel.launch.packages import require_for_training

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def default_config() -> Path:
    """``configs/demo.yaml`` of the source checkout (or of the current directory)."""
    for candidate in (REPO_CONFIGS / "demo.yaml", Path.cwd() / "configs" / "demo.yaml"):
        if candidate.is_file():
            return candidate
    raise CommandError("no --config given and configs/demo.yaml not found (run from the streamlabel checkout)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=path_argument, default=None, help="YAML config (default: configs/demo.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.iterations=100")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of output_dir")
    parser.add_argument("--cpu", action="store_true", help="force the CPU even when CUDA is available")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    from streamlabel.engine.run_files import write_run_file
    from streamlabel.engine.run_lock import RunLock
    from streamlabel.engine.trainer import Trainer
    from streamlabel.launch.run_config import load_run_config

    cfg = load_run_config(args.config or default_config(), args.overrides)
    cfg["output_dir"] = os.path.expanduser(cfg["output_dir"])  # as the data roots: '~' is the home folder
    require_for_training(cfg)
    out = check_run_folder(cfg["output_dir"], args.resume, inputs=data_roots(cfg))
    check_generated_datasets(cfg)
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
    project = ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs"))
    accelerator = Accelerator(cpu=use_cpu, mixed_precision=amp if _cuda_ok(use_cpu) else "no",
                              log_with="tensorboard" if cfg["log"]["tensorboard"] else None,
                              project_config=project)
    set_seed(cfg["seed"], device_specific=False)
    lock = RunLock(out) if accelerator.is_main_process else contextlib.nullcontext()
    try:
        with lock:
            trainer = Trainer(cfg, accelerator, resume=args.resume, progress=not args.quiet)
            results = trainer.run()
            if accelerator.is_main_process:
                _print_summary(results)
                write_run_file(out, "results.json", json.dumps(results, default=float, indent=1).encode())
    except KeyboardInterrupt:
        raise Interrupted(interrupted_message(out)) from None
    return results if accelerator.is_main_process else {}


def interrupted_message(out: Path) -> str:
    """Where a run stopped by Ctrl-C can continue from."""
    from streamlabel.engine.checkpoint import CheckpointError, find_resumable

    try:
        latest = find_resumable(out / "checkpoints")
    except CheckpointError:
        latest = None
    if latest is None:
        return f"no checkpoint was written to {out / 'checkpoints'}; a new run starts from the beginning"
    return f"the last checkpoint is {latest}; continue with --resume and the same config and output_dir={out}"


def check_generated_datasets(cfg: dict) -> None:
    """A dataset the run writes itself (``synthetic``) must not land on files streamlabel did not write:
    checked here, before any work, not when the dataset is built."""
    from streamlabel.data.synthetic import check_synthetic_root, check_synthetic_sizes
    from streamlabel.launch.arg_checks import same_path

    source, target = cfg["data"]["source"], cfg["data"]["target"]
    generated = "synthetic" in (source or {}).get("name", ""), "synthetic" in (target or {}).get("name", "")
    if source and target and any(generated) and same_path(Path(source["root"]).expanduser(),
                                                         Path(target["root"]).expanduser()):
        raise CommandError(f"data.source.root and data.target.root are the same folder ({target['root']}); a "
                           f"generated dataset needs a folder of its own")
    for side in ("source", "target"):
        spec = cfg["data"][side]
        if spec is not None and spec["name"] == "synthetic":
            sizes = {k: v for k, v in (spec.get("kwargs") or {}).items() if k not in ("domain", "seed", "name")}
            try:
                check_synthetic_sizes(**sizes)
            except ValueError as err:
                raise CommandError(f"data.{side}.kwargs: {err}") from err
            try:
                check_synthetic_root(spec["root"])
            except FileExistsError as err:
                raise CommandError(f"data.{side}.root: {err}") from err
            except PermissionError as err:
                raise CommandError(f"data.{side}.root: {err.strerror}") from err


def data_roots(cfg: dict) -> list[Path]:
    """The dataset folders a run reads (outputs never go into them)."""
    return [Path(spec["root"]).expanduser() for spec in (cfg["data"]["source"], cfg["data"]["target"])
            if spec is not None and spec.get("root")]


DIAGNOSTIC_KEYS = ("loss_trace", "labels_sha", "bank_sha", "bank_sum")  # run-to-run checks: results.json only


def json_view(results: dict) -> dict:
    """What the ``--json`` line shows: the results without the diagnostics that tests compare across runs
    (those stay in ``<output_dir>/results.json``)."""
    return {k: v for k, v in results.items() if k not in DIAGNOSTIC_KEYS}


def check_run_folder(output_dir: str | Path, resume: bool, inputs: Sequence[Path] = ()) -> Path:
    """The run folder, refused before any work when it is a file, a dataset folder or inside one, not
    writable (it, its ``checkpoints`` or ``logs`` folder), or when it holds checkpoints a fresh run would
    overwrite without a word. (An empty ``output_dir`` is refused when the config is loaded.)"""
    out = Path(output_dir)
    output_folder(out, "output_dir", inputs)
    for sub in ("checkpoints", "logs"):
        if (out / sub).exists():
            output_folder(out / sub, f"output_dir's {sub} folder")
    from streamlabel.engine.checkpoint import find_resumable
    from streamlabel.engine.run_files import refuse_foreign_run_files

    try:
        refuse_foreign_run_files(out)
    except FileExistsError as err:
        raise CommandError(str(err)) from err
    if resume:  # a checkpoint folder no resume can use stops here, before any work
        find_resumable(out / "checkpoints")
    elif any((out / "checkpoints").glob("*.pt")):
        raise CommandError(f"output_dir {out} already holds checkpoints of an earlier run: pass --resume to "
                           f"continue it, or choose another output_dir (or delete {out / 'checkpoints'})")
    return out


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
        print(f"streamlabel train: error: {error_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"streamlabel train: interrupted{': ' + str(err) if str(err) else ''}", file=sys.stderr)
        return 130
    if args.json and results:
        print(json.dumps(json_view(results), default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
