"""The fingerprint of a resolved configuration (what a checkpoint must match to resume) and its
YAML dump."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import yaml

from streamlabel.config.schema import FINGERPRINT_EXCLUDE

__all__ = ["config_fingerprint", "config_text", "dump_config"]


def config_fingerprint(cfg: dict) -> str:
    """sha256 of the canonical JSON of ``cfg`` without :data:`FINGERPRINT_EXCLUDE` (what defines
    the run)."""
    run = copy.deepcopy(cfg)
    for path in FINGERPRINT_EXCLUDE:
        *parents, leaf = path.split(".")
        node = run
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    text = json.dumps(run, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _to_yaml(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _to_yaml(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_yaml(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def config_text(cfg: dict) -> str:
    """The resolved ``cfg`` as YAML with a header naming its fingerprint (what :func:`dump_config` writes)."""
    body = yaml.safe_dump(
        _to_yaml(cfg), sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    return f"# resolved streamlabel configuration; fingerprint {config_fingerprint(cfg)}\n" + body


def dump_config(cfg: dict, path: str | Path) -> Path:
    """Write the resolved ``cfg`` as YAML (loadable again by :func:`load_config`); returns the
    path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_text(cfg), encoding="utf-8")
    return path
