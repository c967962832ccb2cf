"""``key=value`` command-line overrides: values are parsed as YAML scalars (numbers, bools, lists)."""

from __future__ import annotations

from collections.abc import Iterable

import yaml

from streamlabel.launch.errors import CommandError


def parse_overrides(items: Iterable[str]) -> dict[str, object]:
    """Turn ``["k=30", "anchor_method=random", "a.b=0.5"]`` into a dict; dotted keys nest."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CommandError(f"override {item!r} is not of the form key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise CommandError(f"override {item!r}: value is not valid YAML ({err})") from err
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise CommandError(f"override {item!r} conflicts with an earlier value of {part!r}")
            node = child
        node[leaf] = value
    return out
