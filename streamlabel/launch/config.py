"""Run configurations: YAML files with ``_base_`` inheritance, ``key=value`` overrides, and checks.

``load_config(path, overrides)`` resolves, in this order (later wins):

1. :data:`~streamlabel.launch.config_schema.DEFAULTS`;
2. the files named by ``_base_`` (a path or a list, relative to the including file), each resolved
   the same way, depth first and in list order; a file that includes itself again is an error;
3. the file itself;
4. the ``key=value`` overrides (dotted paths, values read as YAML), in the order given.

Merge rules: dicts merge key by key, recursively; lists, scalars and ``null`` replace. A *builder
node* (``data.source``, ``data.target``, ``model``, ``policy``) whose ``name`` changes is replaced
instead of merged, so the ``kwargs`` / parameters of one dataset, model or policy never leak into
another; its other keys then start from their defaults (``data.source``/``data.target`` must name a
``root`` again). A free map (``*.kwargs``) set to ``null`` is emptied.

Then every key is checked against the schema (unknown keys name the nearest valid one; types follow
the defaults; RANGES / CHOICES; policy parameter *names* against ``policy_parameters``) and every
error is a :class:`ConfigError` naming the file (or "command line") that set the key. Missing policy
parameters are filled in with the policy's defaults, so a dumped config states the whole run.

``data.source: null`` means unsupervised training: ``train.source_batch`` is then *forced* to 0
(whatever was inherited), while ``train.pretrain_iterations > 0`` and ``eval.split: source`` are
errors. Other relative paths in a config (data roots, weight files) are left as written: commands
resolve them against the working directory. Unlike plain YAML 1.1, ``1e-3`` reads as a float.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import io
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from streamlabel.keys import UnknownKeyError
from streamlabel.launch.config_schema import CHOICES, DEFAULTS, FREE_MAPS, RANGES

__all__ = [
    "FINGERPRINT_EXCLUDE",
    "ConfigError",
    "ConfigKeyError",
    "config_fingerprint",
    "dump_config",
    "load_config",
    "parse_override_items",
]

# keys that do not change what is trained: a checkpoint stays valid when only these differ
FINGERPRINT_EXCLUDE = (
    "output_dir",
    "log",
    "eval",
    "train.checkpoint_every_epochs",
    "train.checkpoint_every_iters",
    "train.eval_every_epochs",
    "train.iterations",  # a resume may extend a run; the trainer checks the checkpoint is not beyond the end
    "train.log_every",
)
# bounds for keys that RANGES leaves open (0 = never / off where allowed)
_EXTRA_RANGES: dict[str, tuple[float, float | None, bool]] = {
    "seed": (0, None, True),
    "data.pad": (0, None, True),
    "optim.milestones": (0, None, True),
    "train.grad_clip": (0.0, None, True),
    "train.log_every": (1, None, True),
    "train.eval_every_epochs": (0, None, True),
    "train.checkpoint_every_epochs": (0, None, True),
    "train.checkpoint_every_iters": (0, None, True),
}
_BUILDER_NODES = ("data.source", "data.target", "model", "policy")
_REQUIRED = {"data.source": ("name", "root"), "data.target": ("name", "root"), "model": ("name",), "policy": ("name",)}
# a builder node whose name changes restarts from these (the old kwargs / parameters are dropped)
_FRESH = {"data.source": {"kwargs": {}}, "data.target": {"kwargs": {}}, "model": {"kwargs": {}, "pretrained": None},
          "policy": {}}
_COMMAND_LINE = "command line"
_DEFAULTS_LABEL = "the defaults"


class ConfigError(ValueError):
    """A configuration the user must fix: the message names the file, the key, and what was expected."""


class ConfigKeyError(ConfigError, UnknownKeyError):
    """An unknown configuration key or policy name (also an ``UnknownKeyError``)."""


# --------------------------------------------------------------------------- YAML reading
class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.2) and refuses duplicate keys."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: list = []
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}",
                        key_node.start_mark)
                seen.append(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _read_yaml(path: Path, label: str) -> dict:
    if path.is_dir():
        raise ConfigError(f"{label} is a folder, not a config file (give a .yaml file)")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {label} does not exist (expected a YAML file)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {label} cannot be read as UTF-8 text: {err}") from None
    try:
        stream = io.StringIO(text)
        stream.name = label  # YAML error marks then name the file
        data = yaml.load(stream, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {label} is not valid YAML: {err}") from None
    if data is None:  # an empty file would silently train the built-in defaults
        raise ConfigError(f"config file {label} is empty (no keys, only blanks or comments); "
                          f"start from configs/base.yaml or another config in configs/")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {label} must hold a mapping of keys (e.g. 'train: ...') at the top "
                          f"level, got {type(data).__name__}")
    return data


def _layers(path: Path, stack: tuple[Path, ...]) -> list[tuple[str, dict]]:
    """(label, dict) of ``path`` and its bases, in merge order (bases first)."""
    path = path.expanduser()
    resolved = path.resolve()
    label = _display(path)
    if resolved in stack:
        chain = " -> ".join(_display(p) for p in (*stack, resolved))
        raise ConfigError(f"_base_ cycle: {chain}")
    data = _read_yaml(path, label)
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b.strip() for b in bases):
        raise ConfigError(f"'_base_' in {label} must be a file path or a list of file paths, got {bases!r}")
    out: list[tuple[str, dict]] = []
    for base in bases:
        base_path = Path(base).expanduser()
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        out.extend(_layers(base_path, (*stack, resolved)))
    out.append((label, data))
    return out


def parse_override_items(items: Sequence[str]) -> list[dict]:
    """One nested dict per ``"a.b=value"`` (value read as YAML, ``1e-3`` a float, empty = "")."""
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"override {item!r} on the command line is not a 'key=value' string")
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(p.strip() for p in parts):
            raise ConfigError(f"override {item!r} on the command line is not of the form key=value "
                              "(e.g. train.iterations=1000)")
        try:
            value = yaml.load(raw, Loader=_Loader) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r} on the command line: value is not valid YAML ({err})") from None
        for part in reversed(parts):
            value = {part.strip(): value}
        out.append(value)
    return out


# --------------------------------------------------------------------------- merging
def _forget(origins: dict[str, str], path: str) -> None:
    for key in [k for k in origins if k == path or k.startswith(path + ".")]:
        del origins[key]


def _fresh_node(path: str) -> dict:
    """What a builder node starts from when its ``name`` changes (required keys must be given)."""
    return copy.deepcopy(_FRESH[path])


def _merge(dst: dict, src: dict, origins: dict[str, str], label: str, prefix: str = "") -> None:
    for key, value in src.items():
        path = f"{prefix}{key}"
        old = dst.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            if path in _BUILDER_NODES and "name" in value and value["name"] != old.get("name"):
                old = dst[key] = _fresh_node(path)
                _forget(origins, path)
                origins[path] = label
            _merge(old, value, origins, label, path + ".")
        else:
            dst[key] = copy.deepcopy(value)
            _forget(origins, path)
            origins[path] = label


def _get(tree: object, path: str) -> object:
    for part in path.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _origin(origins: dict[str, str], path: str) -> str:
    parts = path.split(".")
    for n in range(len(parts), 0, -1):
        label = origins.get(".".join(parts[:n]))
        if label is not None:
            return label
    return _DEFAULTS_LABEL


# --------------------------------------------------------------------------- checking
class _Checker:
    def __init__(self, origins: dict[str, str]) -> None:
        self.origins = origins

    def where(self, path: str) -> str:
        return _origin(self.origins, path)

    def unknown(self, key: object, path: str, valid: Sequence[str], prefix: str, what: str = "") -> ConfigKeyError:
        close = difflib.get_close_matches(str(key), sorted(valid), n=1, cutoff=0.5)
        hint = f"; did you mean '{prefix}{close[0]}'?" if close else f" (valid: {', '.join(sorted(valid))})"
        return ConfigKeyError(f"unknown key '{path}' in {self.where(path)}{what}{hint}")

    def type_error(self, path: str, expected: str, value: object) -> ConfigError:
        return ConfigError(f"'{path}' in {self.where(path)} must be {expected}, got {type(value).__name__} "
                           f"{value!r}")

    def node(self, value: object, default: object, path: str) -> object:
        if path in FREE_MAPS:
            if value is None:
                return {}
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise self.type_error(path, "a mapping of keyword arguments (or null)", value)
            return value
        if path == "policy":
            return self.policy(value)
        if path == "loss.terms":
            return self.loss_terms(value)
        if isinstance(default, dict) or (path == "data.source" and value is None):
            if value is None and path == "data.source":
                return None
            if not isinstance(value, dict):
                raise self.type_error(path, "a mapping", value)
            prefix = f"{path}." if path else ""
            for key in value:
                if key not in default:
                    raise self.unknown(key, f"{prefix}{key}", [str(k) for k in default], prefix)
            for key in _REQUIRED.get(path, ()):
                if key not in value:
                    raise ConfigError(f"'{prefix}{key}' is missing: {path} (set in {self.where(path)}) names a "
                                      f"new entry, which needs {' and '.join(_REQUIRED[path])}")
            return {key: self.node(value[key], sub, f"{prefix}{key}") for key, sub in default.items() if key in value}
        return self.leaf(value, default, path)

    def leaf(self, value: object, default: object, path: str) -> object:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise self.type_error(path, "true or false", value)
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.type_error(path, "an integer", value)
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.type_error(path, "a number", value)
            value = float(value)
            if not math.isfinite(value):
                raise self.type_error(path, "a finite number", value)
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise self.type_error(path, "a string", value)
        elif default is None:
            if isinstance(value, Path):
                value = str(value)
            if value is not None and not isinstance(value, str):
                raise self.type_error(path, "a string (a path) or null", value)
        elif isinstance(default, (list, tuple)):
            if not isinstance(value, (list, tuple)):
                raise self.type_error(path, "a list", value)
            if default:
                value = [self.leaf(v, default[0], f"{path}[{i}]") for i, v in enumerate(value)]
                self.bounds(value, path)
            return list(value)
        self.bounds([value], path)
        if path in CHOICES and value not in CHOICES[path]:
            raise ConfigError(f"'{path}' in {self.where(path)} must be one of {', '.join(CHOICES[path])}; "
                              f"got {value!r}")
        return value

    def bounds(self, values: list, path: str) -> None:
        spec = RANGES.get(path) or _EXTRA_RANGES.get(path)
        if spec is None:
            return
        low, high, low_inclusive = spec
        for value in values:
            ok = (value >= low if low_inclusive else value > low) and (high is None or value <= high)
            if not ok:
                allowed = (f"in {'[' if low_inclusive else '('}{low}, {high}]" if high is not None
                           else f"{'>=' if low_inclusive else '>'} {low}")
                raise ConfigError(f"'{path}' in {self.where(path)} must be {allowed}; got {value!r}")

    def loss_terms(self, value: object) -> dict:
        from streamlabel.losses import available_losses, loss_parameters

        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.type_error("loss.terms", "a mapping {loss name: {weight: w, parameters...}}", value)
        names = available_losses()
        out: dict = {}
        for name, params in value.items():
            if name not in names:
                raise self.unknown(name, f"loss.terms.{name}", names, "loss.terms.", " (available loss terms)")
            params = {} if params is None else params
            if not isinstance(params, dict):
                raise self.type_error(f"loss.terms.{name}", "a mapping of the term's parameters (or null)", params)
            valid = loss_parameters(name)
            for key in params:
                if key not in valid:
                    raise self.unknown(key, f"loss.terms.{name}.{key}", [str(k) for k in valid],
                                       f"loss.terms.{name}.", f" (parameters of loss term {name!r})")
            weight = params.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                    or weight < 0:
                raise self.type_error(f"loss.terms.{name}.weight", "a finite number >= 0", weight)
            out[name] = dict(params)
        return out

    def policy(self, value: object) -> dict:
        from streamlabel.methods import available_policies, policy_parameters
        from streamlabel.methods.param_check import dry_run_error, parameter_type_error

        if not isinstance(value, dict):
            raise self.type_error("policy", "a mapping with a 'name' and the policy's parameters", value)
        name = value.get("name")
        if not isinstance(name, str):
            raise self.type_error("policy.name", "a policy name (string)", name)
        names = available_policies()
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigKeyError(f"unknown policy {name!r} for 'policy.name' in {self.where('policy.name')}{hint} "
                                 f"(available: {', '.join(names)})")
        params = policy_parameters(name)
        for key in value:
            if key != "name" and key not in params:
                raise self.unknown(key, f"policy.{key}", [str(k) for k in params], "policy.",
                                   f" (parameters of policy {name!r})")
            problem = parameter_type_error(name, key, value[key], params[key]) if key != "name" else None
            if problem:
                raise ConfigError(f"'policy.{key}' in {self.where(f'policy.{key}')}: {problem}")
        out = {"name": name}
        for key, default in params.items():
            if key in value:
                out[key] = value[key]
            elif _plain(default):
                out[key] = copy.deepcopy(default)
        problem = dry_run_error(name, {k: v for k, v in out.items() if k != "name"})
        if problem:  # a value out of range, found now rather than after the datasets are read
            found = [(m.start(), k) for k in out if k != "name" and (m := re.search(rf"\b{re.escape(k)}\b", problem))]
            key = min(found)[1] if found else None  # the key the message names first
            path = f"policy.{key}" if key else "policy"
            raise ConfigError(f"'{path}' (policy {name!r}) in {self.where(path)}: {problem}")
        return out


def import_plugins(entries: object, where: str) -> None:
    """Import the ``imports`` of a config (dotted module names, or ``.py`` files relative to the working folder)
    so the policies, losses, models and datasets they register exist before the config names them. A module
    is imported once per process (a second ``load_config`` finds it in ``sys.modules``)."""
    import importlib
    import importlib.util
    import sys

    if entries is None:
        return
    if not isinstance(entries, list) or not all(isinstance(e, str) and e.strip() for e in entries):
        raise ConfigError(f"'imports' in {where} must be a list of module names or .py files, got {entries!r}")
    for entry in entries:
        try:
            if entry.endswith(".py"):
                path = Path(entry).expanduser().resolve()
                name = "streamlabel_plugin_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
                if name in sys.modules:
                    continue
                if not path.is_file():
                    raise FileNotFoundError(f"{entry} is not a file (relative paths start at {Path.cwd()})")
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
            else:
                importlib.import_module(entry)
        except Exception as err:  # noqa: BLE001 - any failure of user code is reported as a config error
            raise ConfigError(f"'imports' in {where}: cannot import {entry!r}: {type(err).__name__}: {err}") from None


def _plain(value: object) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(_plain(v) for v in value)


def _cross_checks(cfg: dict, checker: _Checker) -> None:
    train, data = cfg["train"], cfg["data"]
    if data["source"] is None:
        train["source_batch"] = 0  # forced: there is no source to sample
        if train["pretrain_iterations"] > 0:
            raise ConfigError(f"'train.pretrain_iterations' is {train['pretrain_iterations']} (from "
                              f"{checker.where('train.pretrain_iterations')}) but data.source is null: "
                              "source pre-training needs a labelled source; set it to 0")
        if cfg["eval"]["split"] == "source":
            raise ConfigError(f"'eval.split' is 'source' (from {checker.where('eval.split')}) but data.source is null")
    k = data["num_instances"]
    for key in ("source_batch", "target_batch"):
        if train[key] % k:
            raise ConfigError(f"'train.{key}' ({train[key]}, from {checker.where('train.' + key)}) must be a "
                              f"multiple of data.num_instances ({k}): batches hold P identities x K images")
    if not cfg["loss"]["hybrid_memory"] and not cfg["loss"]["terms"]:
        raise ConfigError(f"'loss.hybrid_memory' is false (from {checker.where('loss.hybrid_memory')}) and "
                          "loss.terms is empty: nothing would train the model; add a term or turn the memory on")
    policy = cfg["policy"]
    if policy["name"] == "inclr" and not policy.get("global_only") and not cfg["model"]["kwargs"].get("parts"):
        raise ConfigError(f"policy inclr (from {checker.where('policy.name')}) clusters part features but the model "
                          "returns none: set model.kwargs.parts (e.g. 3, = policy.num_parts), or "
                          "policy.global_only=true for the global clustering alone (not INCLR)")


# --------------------------------------------------------------------------- public API
def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> dict:
    """The resolved, checked configuration of ``path`` (None: the defaults) with ``overrides`` applied."""
    if isinstance(overrides, str):
        overrides = [overrides]
    layers = _layers(Path(path), ()) if path is not None else []
    layers += [(_COMMAND_LINE, item) for item in parse_override_items(overrides)]
    cfg = copy.deepcopy(DEFAULTS)
    origins: dict[str, str] = {}
    for label, data in layers:
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise ConfigError(f"keys in {label} must be strings, got {bad[0]!r}")
        _merge(cfg, data, origins, label)
    import_plugins(cfg.get("imports"), origins.get("imports", "the defaults"))
    checker = _Checker(origins)
    try:
        cfg = checker.node(cfg, DEFAULTS, "")
    except RecursionError:
        raise ConfigError("configuration is nested too deeply") from None
    _cross_checks(cfg, checker)
    return cfg


def config_fingerprint(cfg: dict) -> str:
    """sha256 of the canonical JSON of ``cfg`` without :data:`FINGERPRINT_EXCLUDE` (what defines the run)."""
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


def dump_config(cfg: dict, path: str | Path) -> Path:
    """Write the resolved ``cfg`` as YAML (loadable again by :func:`load_config`); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(_to_yaml(cfg), sort_keys=False, default_flow_style=False, allow_unicode=True)
    header = f"# resolved streamlabel configuration; fingerprint {config_fingerprint(cfg)}\n"
    path.write_text(header + body, encoding="utf-8")
    return path
