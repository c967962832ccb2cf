"""Checking a merged configuration against the schema, and the cross-key rules.

Every error is a :class:`~streamlabel.config.errors.ConfigError` naming the file (or "command
line") that set the key. Policy and loss-term names and parameters are checked against what the
caller passes as :class:`PluginChecks`: the registries live in ``methods/`` and ``losses/``, layers
above this one.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streamlabel.config.errors import ConfigError, ConfigKeyError
from streamlabel.config.limits import memory_problem
from streamlabel.config.schema import CHOICES, FREE_MAPS, RANGES

__all__ = ["Checker", "PluginChecks", "cross_checks", "plugin_cross_checks"]

_REQUIRED = {
    "data.source": ("name", "root"),
    "data.target": ("name", "root"),
    "model": ("name",),
    "policy": ("name",),
}
_DEFAULTS_LABEL = "the defaults"


@dataclass(frozen=True)
class PluginChecks:
    """What the checks ask of the policy and loss-term registries
    (``streamlabel.launch.run_config`` builds it from ``streamlabel.methods`` and
    ``streamlabel.losses``)."""

    policy_names: Callable[[], list[str]]  # every registered policy name
    # a policy's keyword parameters and defaults
    policy_parameters: Callable[[str], dict[str, object]]
    # why a value cannot stand for a parameter: (policy, key, value, default) -> message or None
    policy_value_error: Callable[[str, str, object, object], str | None]
    # the error a policy's constructor raises for these parameters: (policy, params) -> message or
    # None
    policy_error: Callable[[str, dict[str, object]], str | None]
    loss_names: Callable[[], list[str]]  # every registered loss term name
    # a loss term's parameters, with its weight
    loss_parameters: Callable[[str], dict[str, object]]
    # what is wrong with a model name and its kwargs: (name, kwargs) -> (key or None, message) or None;
    # None: models are not checked when the config is loaded (only when the model is built)
    model_error: Callable[[str, dict[str, object]], tuple[str | None, str] | None] | None = None


def _origin(origins: dict[str, str], path: str) -> str:
    parts = path.split(".")
    for n in range(len(parts), 0, -1):
        label = origins.get(".".join(parts[:n]))
        if label is not None:
            return label
    return _DEFAULTS_LABEL


# --------------------------------------------------------------------------- checking
class Checker:
    """Checks a merged config against the schema; ``origins`` names the file that set each key."""

    def __init__(self, origins: dict[str, str], plugins: PluginChecks, *, defer_plugins: bool = False) -> None:
        self.origins = origins
        self.plugins = plugins
        # True: the keys whose valid values depend on registries (policy, loss.terms) get only their shape
        # checked by node(); plugin_node() checks them once the config's ``imports`` are imported
        self.defer_plugins = defer_plugins

    def where(self, path: str) -> str:
        return _origin(self.origins, path)

    def unknown(
        self, key: object, path: str, valid: Sequence[str], prefix: str, what: str = ""
    ) -> ConfigKeyError:
        close = difflib.get_close_matches(str(key), sorted(valid), n=1, cutoff=0.5)
        hint = (
            f"; did you mean '{prefix}{close[0]}'?"
            if close
            else f" (valid: {', '.join(sorted(valid))})"
        )
        return ConfigKeyError(f"unknown key '{path}' in {self.where(path)}{what}{hint}")

    def type_error(self, path: str, expected: str, value: object) -> ConfigError:
        return ConfigError(
            f"'{path}' in {self.where(path)} must be {expected}, got {type(value).__name__} "
            f"{value!r}"
        )

    def node(self, value: object, default: object, path: str) -> object:
        if path in FREE_MAPS:
            if value is None:
                return {}
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise self.type_error(path, "a mapping of keyword arguments (or null)", value)
            return value
        if path == "policy":
            if self.defer_plugins:
                self.policy_shape(value)
                return value
            return self.policy(value)
        if path == "loss.terms":
            if self.defer_plugins:
                if value is not None and not isinstance(value, dict):
                    raise self.type_error(
                        "loss.terms", "a mapping {loss name: {weight: w, parameters...}}", value
                    )
                return value
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
                    raise ConfigError(
                        f"'{prefix}{key}' is missing: {path} (set in {self.where(path)}) names a "
                        f"new entry, which needs {' and '.join(_REQUIRED[path])}"
                    )
            return {
                key: self.node(value[key], sub, f"{prefix}{key}")
                for key, sub in default.items()
                if key in value
            }
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
            raise ConfigError(
                f"'{path}' in {self.where(path)} must be one of {', '.join(CHOICES[path])}; "
                f"got {value!r}"
            )
        return value

    def bounds(self, values: list, path: str) -> None:
        spec = RANGES.get(path)
        if spec is None:
            return
        low, high, low_inclusive = spec
        for value in values:
            ok = (value >= low if low_inclusive else value > low) and (
                high is None or value <= high
            )
            if not ok:
                allowed = (f"in {'[' if low_inclusive else '('}{low}, {high}]" if high is not None
                           else f"{'>=' if low_inclusive else '>'} {low}")
                raise ConfigError(
                    f"'{path}' in {self.where(path)} must be {allowed}; got {value!r}"
                )

    def loss_terms(self, value: object) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.type_error(
                "loss.terms", "a mapping {loss name: {weight: w, parameters...}}", value
            )
        names = self.plugins.loss_names()
        out: dict = {}
        for name, params in value.items():
            if name not in names:
                raise self.unknown(
                    name, f"loss.terms.{name}", names, "loss.terms.", " (available loss terms)"
                )
            params = {} if params is None else params
            if not isinstance(params, dict):
                raise self.type_error(
                    f"loss.terms.{name}", "a mapping of the term's parameters (or null)", params
                )
            valid = self.plugins.loss_parameters(name)
            for key in params:
                if key not in valid:
                    raise self.unknown(
                        key,
                        f"loss.terms.{name}.{key}",
                        [str(k) for k in valid],
                        f"loss.terms.{name}.",
                        f" (parameters of loss term {name!r})",
                    )
            weight = params.get("weight", 1.0)
            if (
                isinstance(weight, bool)
                or not isinstance(weight, (int, float))
                or not math.isfinite(weight)
                or weight < 0
            ):
                raise self.type_error(f"loss.terms.{name}.weight", "a finite number >= 0", weight)
            out[name] = dict(params)
        return out

    def policy_shape(self, value: object) -> str:
        """The policy's name, once ``value`` is a mapping with a string ``name``."""
        if not isinstance(value, dict):
            raise self.type_error(
                "policy", "a mapping with a 'name' and the policy's parameters", value
            )
        name = value.get("name")
        if not isinstance(name, str):
            raise self.type_error("policy.name", "a policy name (string)", name)
        return name

    def plugin_node(self, cfg: dict) -> dict:
        """The checks that need the registries, after ``imports``: policy, loss terms, model."""
        cfg["policy"] = self.policy(cfg["policy"])
        if "loss" in cfg:
            cfg["loss"]["terms"] = self.loss_terms(cfg["loss"].get("terms"))
        self.model(cfg["model"])
        return cfg

    def model(self, model: dict) -> None:
        """``model.name`` registered and ``model.kwargs`` accepted by its builder (when the caller checks
        models)."""
        if self.plugins.model_error is None:
            return
        problem = self.plugins.model_error(model["name"], dict(model.get("kwargs") or {}))
        if problem:
            key, message = problem
            if key is None:  # the name is unknown
                raise ConfigKeyError(f"'model.name' in {self.where('model.name')}: {message}")
            if key:
                path, where = f"model.kwargs.{key}", self.where(f"model.kwargs.{key}")
            else:  # the kwargs together: name every file that set one of them
                path = "model.kwargs"
                where = " and ".join(dict.fromkeys(self.where(f"model.kwargs.{k}") for k in model["kwargs"]))
            raise ConfigError(f"'{path}' in {where or self.where(path)}: {message}")

    def policy(self, value: object) -> dict:
        name = self.policy_shape(value)
        names = self.plugins.policy_names()
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigKeyError(
                f"unknown policy {name!r} for 'policy.name' in {self.where('policy.name')}{hint} "
                f"(available: {', '.join(names)})"
            )
        params = self.plugins.policy_parameters(name)
        for key in value:
            if key != "name" and key not in params:
                raise self.unknown(key, f"policy.{key}", [str(k) for k in params], "policy.",
                                   f" (parameters of policy {name!r})")
            problem = (
                self.plugins.policy_value_error(name, key, value[key], params[key])
                if key != "name"
                else None
            )
            if problem:
                raise ConfigError(f"'policy.{key}' in {self.where(f'policy.{key}')}: {problem}")
        out = {"name": name}
        for key, default in params.items():
            if key in value:
                out[key] = value[key]
            elif _plain(default):
                out[key] = copy.deepcopy(default)
        problem = self.plugins.policy_error(name, {k: v for k, v in out.items() if k != "name"})
        if problem:  # a value out of range, found now rather than after the datasets are read
            found = [
                (m.start(), k)
                for k in out
                if k != "name" and (m := re.search(rf"\b{re.escape(k)}\b", problem))
            ]
            key = min(found)[1] if found else None  # the key the message names first
            path = f"policy.{key}" if key else "policy"
            raise ConfigError(f"'{path}' (policy {name!r}) in {self.where(path)}: {problem}")
        return out



def _plain(value: object) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(_plain(v) for v in value)


def cross_checks(cfg: dict, checker: Checker) -> None:
    train, data = cfg["train"], cfg["data"]
    _no_empty_paths(cfg, checker)
    if data["source"] is None:
        train["source_batch"] = 0  # forced: there is no source to sample
        if train["pretrain_iterations"] > 0:
            raise ConfigError(
                f"'train.pretrain_iterations' is {train['pretrain_iterations']} (from "
                f"{checker.where('train.pretrain_iterations')}) but data.source is null: "
                "source pre-training needs a labelled source; set it to 0"
            )
        if cfg["eval"]["split"] == "source":
            raise ConfigError(
                f"'eval.split' is 'source' (from {checker.where('eval.split')}) "
                "but data.source is null"
            )
    k = data["num_instances"]
    for key in ("source_batch", "target_batch"):
        if train[key] % k:
            raise ConfigError(
                f"'train.{key}' ({train[key]}, from {checker.where('train.' + key)}) must be a "
                f"multiple of data.num_instances ({k}): batches hold P identities x K images"
            )
    _memory_checks(cfg, checker)
    if not cfg["loss"]["hybrid_memory"] and not cfg["loss"]["terms"]:
        raise ConfigError(
            f"'loss.hybrid_memory' is false (from {checker.where('loss.hybrid_memory')}) and "
            "loss.terms is empty: nothing would train the model; add a term or turn the memory on"
        )



def _no_empty_paths(cfg: dict, checker: Checker) -> None:
    """A path set to an empty string would mean the current folder (a data root, the run folder) or be
    skipped as if unset (weights): refused, naming the key and the way to say "none"."""
    paths = {"output_dir": cfg.get("output_dir"), "model.pretrained": cfg["model"].get("pretrained")}
    for side in ("source", "target"):
        if cfg["data"][side] is not None:
            paths[f"data.{side}.root"] = cfg["data"][side].get("root")
    for key, value in paths.items():
        if isinstance(value, str) and not value.strip():
            none = " (null for none)" if key == "model.pretrained" else ""
            raise ConfigError(f"'{key}' (from {checker.where(key)}) is an empty path; give a path{none}")


def _memory_checks(cfg: dict, checker: Checker) -> None:
    """The image sizes and batches are bounded one by one (RANGES); together they must also fit: a training
    batch (source + target) and an evaluation batch of float32 images, with the padded crop, at the least."""
    data = cfg["data"]
    side_h, side_w = data["height"] + 2 * data["pad"], data["width"] + 2 * data["pad"]
    image = 3 * side_h * side_w * 4  # float32 CHW
    train = cfg["train"]
    for keys, count in ((("train.source_batch", "train.target_batch"), train["source_batch"] + train["target_batch"]),
                        (("eval.batch_size",), cfg["eval"]["batch_size"])):
        what = (f"one batch of {count} images of {data['height']} x {data['width']} (+ {data['pad']} padding) "
                f"({' + '.join(keys)}, data.height / width / pad)")
        problem = memory_problem(count * image, what)
        if problem:
            origins = dict.fromkeys(checker.where(k) for k in (*keys, "data.height", "data.width", "data.pad"))
            raise ConfigError(f"{problem} (set in {' and '.join(origins)}): lower the batch or the image size")


def plugin_cross_checks(cfg: dict, checker: Checker) -> None:
    """The cross-key rules that need the checked policy (after ``Checker.plugin_node``)."""
    policy = cfg["policy"]
    if (
        policy["name"] == "inclr"
        and not policy.get("global_only")
        and not cfg["model"]["kwargs"].get("parts")
    ):
        raise ConfigError(
            f"policy inclr (from {checker.where('policy.name')}) clusters part features "
            "but the model "
            "returns none: set model.kwargs.parts (e.g. 3, = policy.num_parts), or "
            "policy.global_only=true for the global clustering alone (not INCLR)"
        )


