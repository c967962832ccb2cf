"""Optional packages a command needs, checked before any work starts (a missing one is a one-line error
naming the ``pip install`` to run, never a traceback after hours of training)."""

from __future__ import annotations

import importlib.util

from streamlabel.launch.errors import CommandError


def require(module: str, needed_for: str, install: str | None = None) -> None:
    """Raise CommandError when ``module`` cannot be imported; ``needed_for`` says which feature wants it."""
    if importlib.util.find_spec(module) is None:
        raise CommandError(f"{needed_for} needs the '{module}' package, which is not installed: "
                           f"pip install {install or module}")


def require_for_training(cfg: dict) -> None:
    """The packages a training run of ``cfg`` will import: onnx for an ONNX model, tensorboard for logging."""
    if cfg["model"]["name"] == "onnx":
        require("onnx", "model.name: onnx")
    if cfg["log"]["tensorboard"]:
        require("tensorboard", "log.tensorboard: true (set log.tensorboard=false to train without it)")
