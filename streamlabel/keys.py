"""Checking user-given parameter names: unknown keys are errors that name the nearest valid key."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping


class UnknownKeyError(KeyError):
    """A parameter or config key that does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


def check_keys(given: Mapping[str, object] | Iterable[str], valid: Iterable[str], where: str) -> None:
    """Raise UnknownKeyError for the first key of ``given`` not in ``valid``, suggesting the closest one."""
    valid = sorted(valid)
    for key in given:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownKeyError(f"unknown key {key!r} in {where}{hint} (valid keys: {', '.join(valid)})")
