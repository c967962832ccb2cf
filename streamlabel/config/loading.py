"""Run configurations: YAML files with ``_base_`` inheritance, ``key=value`` overrides, and checks.

``load_config(path, overrides, checks=...)`` resolves, in this order (later wins):

1. :data:`~streamlabel.config.schema.DEFAULTS`;
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
the defaults; RANGES / CHOICES; policy and loss-term names and parameters against the caller's
``checks``) and every error is a :class:`ConfigError` naming the file (or "command line") that set
the key. ``imports`` runs code, so it is imported only after every key that does not depend on it has
passed; the names and parameters a plugin may register (policy, loss terms, model) are checked after it.
Missing policy parameters are filled in with the policy's defaults, so a dumped config states the whole
run.

A file is read only if it is a regular file (no FIFO, device or socket: nothing can hang) of at most
:data:`MAX_CONFIG_BYTES`; YAML whose aliases expand beyond :data:`MAX_YAML_NODES` values (an alias bomb)
or that nests too deeply for the parser is refused, in files and ``key=value`` overrides alike.

``data.source: null`` means unsupervised training: ``train.source_batch`` is then *forced* to 0
(whatever was inherited), while ``train.pretrain_iterations > 0`` and ``eval.split: source`` are
errors. Other relative paths in a config (data roots, weight files) are left as written: commands
resolve them against the working directory. Unlike plain YAML 1.1, ``1e-3`` reads as a float.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

import yaml

from streamlabel.config.checks import Checker, PluginChecks, cross_checks, plugin_cross_checks
from streamlabel.config.errors import ConfigError
from streamlabel.config.schema import DEFAULTS

__all__ = ["MAX_CONFIG_BYTES", "MAX_YAML_NODES", "import_plugins", "load_config", "parse_override_items",
           "read_text_capped"]

_BUILDER_NODES = ("data.source", "data.target", "model", "policy")
# a builder node whose name changes restarts from these (the old kwargs / parameters are dropped)
_FRESH = {
    "data.source": {"kwargs": {}},
    "data.target": {"kwargs": {}},
    "model": {"kwargs": {}, "pretrained": None},
    "policy": {},
}
_COMMAND_LINE = "command line"


# --------------------------------------------------------------------------- YAML reading
MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: a config is a few KiB of YAML; anything bigger is the wrong file
# YAML nodes a document may stand for once every alias is expanded: a real config has a few hundred;
# "billion laughs" (anchors of aliases of anchors) stands for exponentially many from a few lines
MAX_YAML_NODES = 100_000

_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _file_kind(mode: int) -> str:
    return next((kind for test, kind in _FILE_KINDS if test(mode)), "not a regular file")


class _AliasBomb(yaml.YAMLError):
    """A document whose aliases expand to more than MAX_YAML_NODES nodes, or refer to themselves."""


def _expanded_nodes(root: yaml.Node) -> int:
    """Nodes ``root`` stands for with every alias expanded (a shared node counts once per use), counted
    without expanding anything; raises _AliasBomb above MAX_YAML_NODES or for an alias inside its own
    anchor (a recursive structure)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _AliasBomb(f"an alias refers to the node that contains it (line {node.start_mark.line + 1}): "
                             "a recursive structure cannot be a configuration")
        total = 1
        if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
            active.add(key)
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for kv in node.value for n in kv]
            for child in children:
                total += size(child)
                if total > MAX_YAML_NODES:
                    break
            active.discard(key)
        if total > MAX_YAML_NODES:
            raise _AliasBomb(f"its anchors and aliases (&name / *name) expand to more than {MAX_YAML_NODES:,} "
                             "values (an alias bomb, \"billion laughs\"); refused before expanding them")
        sizes[key] = total
        return total

    size(root)
    return sizes[id(root)]


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.2), refuses duplicate keys and refuses documents
    whose aliases expand beyond MAX_YAML_NODES (checked on the node graph, before anything is built)."""

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _expanded_nodes(node)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: list = []
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
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
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a loop of symbolic links
        return str(path)


def read_text_capped(path: Path, label: str, what: str = "config file", limit: int = MAX_CONFIG_BYTES) -> str:
    """The UTF-8 text of the regular file ``path``, read without hanging or exhausting memory: a FIFO, a
    device or a socket is refused before it is opened for reading, and at most ``limit`` + 1 bytes are read
    (more is refused). Every failure is a ConfigError naming ``label``."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{what} {label} does not exist (expected a YAML file)") from None
    except OSError as err:
        raise ConfigError(f"{what} {label} cannot be read: {err.strerror or err}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{label} is a folder, not a config file (give a .yaml file)")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what} {label} is {_file_kind(info.st_mode)}, not a regular file; "
                          "give a .yaml file (it was not read)")
    try:  # O_NONBLOCK: should the path turn into a FIFO after the check, open() still does not wait
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as err:
        raise ConfigError(f"{what} {label} cannot be read: {err.strerror or err}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # what was opened is what was checked
            raise ConfigError(f"{what} {label} is not a regular file; give a .yaml file (it was not read)")
        try:
            data = handle.read(limit + 1)
        except OSError as err:
            raise ConfigError(f"{what} {label} cannot be read: {err.strerror or err}") from None
    if len(data) > limit:
        size = f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit:,} bytes"
        raise ConfigError(f"{what} {label} is larger than {size} ({info.st_size:,} bytes); a config is "
                          "a few KiB of YAML: is this the right file? (it was not parsed)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what} {label} cannot be read as UTF-8 text: {err}") from None


def _parse_yaml(text: str, name: str, what: str = "config file") -> object:
    """``text`` as YAML with _Loader; raises yaml.YAMLError (alias bombs included) or ConfigError."""
    stream = io.StringIO(text)
    stream.name = name  # YAML error marks then name the file
    try:
        return yaml.load(stream, Loader=_Loader)  # a SafeLoader subclass
    except RecursionError:
        raise ConfigError(f"{what} {name} is nested too deeply (thousands of levels of YAML); a config has a "
                          "few") from None


def _read_yaml(path: Path, label: str) -> dict:
    text = read_text_capped(path, label)
    try:
        data = _parse_yaml(text, label)
    except _AliasBomb as err:
        raise ConfigError(f"config file {label} is refused: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {label} is not valid YAML: {err}") from None
    if data is None:  # an empty file would silently train the built-in defaults
        raise ConfigError(f"config file {label} is empty (no keys, only blanks or comments); "
                          f"start from configs/base.yaml or another config in configs/")
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {label} must hold a mapping of keys (e.g. 'train: ...') at the top "
            f"level, got {type(data).__name__}"
        )
    return data


def _layers(path: Path, stack: tuple[Path, ...]) -> list[tuple[str, dict]]:
    """(label, dict) of ``path`` and its bases, in merge order (bases first)."""
    path = path.expanduser()
    label = _display(path)
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as err:
        raise ConfigError(f"config file {label} cannot be resolved (a loop of symbolic links?): {err}") from None
    if resolved in stack:
        chain = " -> ".join(_display(p) for p in (*stack, resolved))
        raise ConfigError(f"_base_ cycle: {chain}")
    data = _read_yaml(path, label)
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b.strip() for b in bases):
        raise ConfigError(
            f"'_base_' in {label} must be a file path or a list of file paths, got {bases!r}"
        )
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
            raise ConfigError(
                f"override {item!r} on the command line is not of the form key=value "
                "(e.g. train.iterations=1000)"
            )
        try:
            value = _parse_yaml(raw, repr(item), "override") if raw.strip() else ""
        except _AliasBomb as err:
            raise ConfigError(f"override {key.strip()!r} on the command line is refused: {err}") from None
        except yaml.YAMLError as err:
            raise ConfigError(
                f"override {item!r} on the command line: value is not valid YAML ({err})"
            ) from None
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



def _check_import_entries(entries: object, where: str) -> None:
    if entries is not None and (
        not isinstance(entries, list) or not all(isinstance(e, str) and e.strip() for e in entries)
    ):
        raise ConfigError(
            f"'imports' in {where} must be a list of module names or .py files, got {entries!r}"
        )


def import_plugins(entries: object, where: str) -> None:
    """Import the ``imports`` of a config (dotted module names, or ``.py`` files relative to the
    working folder) so the policies, losses, models and datasets they register exist before the
    config names them. A module is imported once per process (a second ``load_config`` finds it in
    ``sys.modules``)."""
    import importlib
    import importlib.util
    import sys

    if entries is None:
        return
    _check_import_entries(entries, where)
    for entry in entries:
        try:
            if entry.endswith(".py"):
                try:
                    path = Path(entry).expanduser().resolve()
                except RuntimeError as err:  # a loop of symbolic links
                    raise FileNotFoundError(f"{entry} cannot be resolved: {err}") from None
                name = "streamlabel_plugin_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
                if name in sys.modules:
                    continue
                if not path.is_file():
                    raise FileNotFoundError(
                        f"{entry} is not a file (relative paths start at {Path.cwd()})"
                    )
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
        except SystemExit as err:  # a plugin that exits would end the command with its status, silently
            raise ConfigError(f"'imports' in {where}: cannot import {entry!r}: it called sys.exit({err.code!r})"
                              ) from None
        except Exception as err:  # noqa: BLE001
            # any failure of user code is reported as a config error
            raise ConfigError(
                f"'imports' in {where}: cannot import {entry!r}: {type(err).__name__}: {err}"
            ) from None



# --------------------------------------------------------------------------- public API
def load_config(
    path: str | Path | None, overrides: Sequence[str] = (), *, checks: PluginChecks
) -> dict:
    """The resolved, checked configuration of ``path`` (None: the defaults) with ``overrides``
    applied; ``checks`` says which policies and loss terms exist and what they accept."""
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
    # everything the registries do not decide is checked before ``imports`` runs any code ...
    _check_import_entries(cfg.get("imports"), origins.get("imports", "the defaults"))
    checker = Checker(origins, checks, defer_plugins=True)
    try:
        cfg = checker.node(cfg, DEFAULTS, "")
    except RecursionError:
        raise ConfigError("configuration is nested too deeply") from None
    cross_checks(cfg, checker)
    # ... then the plugins are imported, and what they may register is checked
    import_plugins(cfg.get("imports"), origins.get("imports", "the defaults"))
    checker.defer_plugins = False
    try:
        cfg = checker.plugin_node(cfg)
    except RecursionError:
        raise ConfigError("configuration is nested too deeply") from None
    plugin_cross_checks(cfg, checker)
    return cfg

