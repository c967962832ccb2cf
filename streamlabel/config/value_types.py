"""Whether a value can stand for a setting, judged by the type of the setting's default."""

from __future__ import annotations

__all__ = ["expected_like"]


def expected_like(value: object, default: object) -> str | None:
    """What a value of ``default``'s kind is ("an integer", "true or false", ...) when ``value`` is not one;
    None when it is, or when ``default``'s type says nothing (None, a mapping, an object). Booleans are not
    numbers here, integers are numbers."""
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, expected = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, expected = isinstance(value, str), "a string"
    elif isinstance(default, (list, tuple)):
        ok, expected = isinstance(value, (list, tuple)), "a list"
    else:
        return None
    return None if ok else expected
