"""CommandError: an error the user can fix; the CLI prints it without a traceback and exits with 2."""


class CommandError(RuntimeError):
    """Bad input to a command (missing file, malformed value)."""
