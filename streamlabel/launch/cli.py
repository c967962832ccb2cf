"""The `streamlabel` command: dispatches to one module per sub-command.

Each sub-command module exposes ``add_arguments(parser)`` and ``run(args) -> dict``; the dict is
printed as one JSON object on the last line when ``--json`` is given. Modules are imported lazily so
``streamlabel --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from collections.abc import Sequence

from streamlabel import __version__
from streamlabel.launch.arg_checks import DefaultsHelpFormatter, no_repeated_keys
from streamlabel.launch.errors import CommandError, error_message

# sub-command name -> (module path, one-line help)
__all__ = ["COMMANDS", "CommandError", "main"]

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("streamlabel.launch.train", "train with a config (default: the synthetic demo) on this process"),
    "labels": ("streamlabel.launch.labels_cmd", "pseudo labels for a feature dump (.npz) with a bank policy"),
    "synth": ("streamlabel.launch.synth_cmd", "preview or write the synthetic source/target re-ID domains"),
    "evaluate": ("streamlabel.launch.evaluate_cmd", "retrieval mAP / CMC of query and gallery feature dumps"),
    "extract": ("streamlabel.launch.extract_cmd", "embed a dataset split with a config's or checkpoint's model (.npz)"),
    "compare": ("streamlabel.launch.compare_cmd", "one training run per label refresh interval: online vs offline"),
}


DESCRIPTION = """Pseudo labels for unsupervised and domain-adaptive re-identification: train a re-ID model on
unlabelled target images with labels that follow the features (streamlabel train), label a feature dump
with any method (streamlabel labels), embed a dataset split (streamlabel extract), score retrieval
(streamlabel evaluate), compare online against offline label refresh (streamlabel compare).
`streamlabel COMMAND --help` shows a command's options."""

EXAMPLES = """examples:
  streamlabel train                                     # the synthetic demo on the CPU
  streamlabel train --config configs/cpu_cuhk03.yaml    # MSMT17 OSNet adapted to CUHK03 (../shared)
  streamlabel labels --features feats.npz --policy hcd --out labels.npy
  streamlabel extract --config configs/cpu_cuhk03.yaml --split train --out train.npz
  streamlabel evaluate --query q.npz --gallery g.npz --rerank
  streamlabel compare --config configs/demo.yaml --refresh-every 0,1,2"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamlabel", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"streamlabel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _extra_errors(module: object) -> tuple[type[BaseException], ...]:
    """The sub-command's own user-facing errors (``user_errors()``, e.g. train's checkpoint errors)."""
    errors = getattr(module, "user_errors", None)
    return tuple(errors()) if callable(errors) else ()


def one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                     file: object = None, line: str | None = None) -> None:
    """A warning as the user reads it: one ``[streamlabel] warning:`` line, not the module and source line."""
    print(f"[streamlabel] warning: {message}", file=sys.stderr)


def os_error_message(err: OSError) -> str:
    """'<reason>: <path>' for an OSError (the system's words, the file it was about)."""
    where = f": {err.filename}" if err.filename else ""
    return f"{err.strerror or type(err).__name__}{where}" if err.strerror else str(err)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "--version") or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] == "--version":
            parser.parse_args(argv[:1])  # prints the version and exits 0
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"streamlabel {name}", description=COMMANDS[name][1],
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    module.add_arguments(parser)
    args = parser.parse_intermixed_args(rest)  # key=value overrides may come before or after flags
    shown = warnings.showwarning
    warnings.showwarning = one_line_warning
    try:
        for typed in ("overrides", "params"):  # what a user typed twice; programs may layer overrides
            no_repeated_keys(getattr(args, typed, []))
        result = module.run(args)
    except (CommandError, FileNotFoundError, ValueError, KeyError, *_extra_errors(module)) as err:
        print(f"streamlabel {name}: error: {error_message(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # a path the system refused (too long, permission, read-only): what and where
        print(f"streamlabel {name}: error: {os_error_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"streamlabel {name}: interrupted{': ' + str(err) if str(err) else ''}", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown
    if args.json:
        view = getattr(module, "json_view", None)  # a command may keep diagnostics off the line
        print(json.dumps(view(result) if callable(view) else result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
