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
from collections.abc import Sequence

from streamlabel.launch.errors import CommandError

# sub-command name -> (module path, one-line help)
__all__ = ["COMMANDS", "CommandError", "main"]

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("streamlabel.launch.train", "train with a config (default: the synthetic demo) on this process"),
    "labels": ("streamlabel.launch.labels_cmd", "pseudo labels for a feature dump (.npz) with a bank policy"),
    "synth": ("streamlabel.launch.synth_cmd", "preview or write the synthetic source/target re-ID domains"),
    "evaluate": ("streamlabel.launch.evaluate_cmd", "retrieval mAP / CMC of query and gallery feature dumps"),
    "compare": ("streamlabel.launch.compare_cmd", "one training run per label refresh interval: online vs offline"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamlabel", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _extra_errors(module: object) -> tuple[type[BaseException], ...]:
    """The sub-command's own user-facing errors (``user_errors()``, e.g. train's checkpoint errors)."""
    errors = getattr(module, "user_errors", None)
    return tuple(errors()) if callable(errors) else ()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"streamlabel {name}", description=COMMANDS[name][1],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    module.add_arguments(parser)
    args = parser.parse_intermixed_args(rest)  # key=value overrides may come before or after flags
    try:
        result = module.run(args)
    except (CommandError, FileNotFoundError, ValueError, KeyError, *_extra_errors(module)) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"streamlabel {name}: error: {message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
