"""The errors of a configuration the user must fix."""

from __future__ import annotations

from streamlabel.keys import UnknownKeyError

__all__ = ["ConfigError", "ConfigKeyError"]


class ConfigError(ValueError):
    """A configuration the user must fix: the message names the file, the key, and what was
    expected."""


class ConfigKeyError(ConfigError, UnknownKeyError):
    """An unknown configuration key or policy name (also an ``UnknownKeyError``)."""
