"""CommandError: an error the user can fix; the CLI prints it without a traceback and exits with 2."""


class CommandError(RuntimeError):
    """Bad input to a command (missing file, malformed value)."""


class InputError(CommandError, ValueError):
    """Bad command-line input; also a ValueError, so callers catching ValueError report it cleanly."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with where the work stopped (the last checkpoint); the CLI prints it and exits with 130."""
