"""Child processes that a test interrupts with Ctrl-C (SIGINT)."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """``preexec_fn`` of such a child: SIGINT back to its default before exec, so Ctrl-C acts as in a terminal
    even when the test process itself was started with SIGINT ignored (a background job of a non-interactive
    shell), a disposition the child would otherwise inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
