"""Fuzz load_config: random YAML trees and random key=value overrides load or raise ConfigError,
nothing else."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamlabel.config.errors import ConfigError
from streamlabel.config.fingerprint import config_fingerprint, dump_config
from streamlabel.config.schema import DEFAULTS
from streamlabel.keys import UnknownKeyError
from streamlabel.launch.run_config import load_run_config as load_config

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _schema_keys(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        keys.append(prefix + key)
        if isinstance(value, dict):
            keys += _schema_keys(value, prefix + key + ".")
    return keys


KEYS = _schema_keys(DEFAULTS) + [
    "policy.name",
    "policy.k",
    "policy.sigma",
    "policy.simga",
    "_base_",
    "bogus",
]
NAMES = sorted({k.split(".")[-1] for k in KEYS} | {"x", "name", "root", "kwargs"})

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["hcd", "skip", "cpu", "1e-3", "", "a b"]),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(NAMES), inner, max_size=3)
    ),
    max_leaves=10,
)
trees = st.dictionaries(st.sampled_from(NAMES), values, max_size=5)


def _load_or_config_error(path, overrides=()):
    try:
        cfg = load_config(path, overrides)
    except (ConfigError, UnknownKeyError):
        return None
    assert isinstance(config_fingerprint(cfg), str)
    return cfg


@FUZZ
@given(tree=trees)
def test_random_yaml_trees_load_or_raise_config_error(tree):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(yaml.safe_dump(tree))
        cfg = _load_or_config_error(path)
        if cfg is not None:  # a config that loads dumps and loads back to itself
            again = load_config(dump_config(cfg, Path(tmp) / "out.yaml"))
            assert config_fingerprint(again) == config_fingerprint(cfg)


override_values = st.one_of(
    st.sampled_from(
        ["1", "0", "-1", "0.5", "1e-3", "null", "true", "[1, 2]", "{a: 1}", "hcd", "", "[", "'x"]
    ),
    st.text(max_size=10),
)
overrides = st.lists(
    st.one_of(
        st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), override_values),
        st.text(max_size=15),
    ),
    max_size=4,
)


@FUZZ
@given(items=overrides)
def test_random_overrides_load_or_raise_config_error(items):
    _load_or_config_error(None, items)


@FUZZ
@given(tree=trees, items=overrides)
def test_random_tree_plus_overrides(tree, items):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(yaml.safe_dump({"_base_": "base.yaml", **tree}))
        (Path(tmp) / "base.yaml").write_text("train: {iterations: 10}\n")
        _load_or_config_error(path, items)
