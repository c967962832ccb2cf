"""Errors raised by the dataset parsers and image loaders."""

from __future__ import annotations


class DatasetLayoutError(ValueError):
    """A dataset folder does not have the expected layout (missing folder, bad names, bad list line)."""


class UnreadableImageError(OSError):
    """An image file cannot be opened or decoded; ``path`` names the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = path
        self.reason = reason
