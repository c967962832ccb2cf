"""CommandError: an error the user can fix; the CLI prints it without a traceback and exits with 2."""

from __future__ import annotations

import traceback
from pathlib import Path


class CommandError(RuntimeError):
    """Bad input to a command (missing file, malformed value)."""


class InputError(CommandError, ValueError):
    """Bad command-line input; also a ValueError, so callers catching ValueError report it cleanly."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with where the work stopped (the last checkpoint); the CLI prints it and exits with 130."""


def error_message(err: BaseException) -> str:
    """The one-line text of a user-facing error. A KeyError is never shown as a bare quoted key: one with a
    message of its own (``UnknownKeyError``, ``CheckpointKeyError``, a sentence) shows it; a plain missing key
    says which key was missing and where streamlabel looked it up."""
    if not isinstance(err, KeyError):
        return str(err)
    if type(err).__str__ is not KeyError.__str__:  # UnknownKeyError & co. say it themselves
        return str(err)
    key = err.args[0] if err.args else None
    if isinstance(key, str) and " " in key.strip():  # KeyError("no OSNet module for ...") is a sentence
        return key
    where = ""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "streamlabel" in Path(f.filename).parts]
    if frames:
        frame = frames[-1]
        parts = Path(frame.filename).parts
        short = "/".join(parts[parts.index("streamlabel"):])
        where = f" (looked up by {frame.name} in {short}, line {frame.lineno})"
    return (f"missing key {key!r}{where}: an input (a checkpoint, a config, a feature file) lacks an entry "
            "streamlabel needs")
