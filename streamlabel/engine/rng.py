"""Capture and restore every random number generator a training run draws from.

Resume is meant to be bit-exact (DESIGN.md section 6 item 6): after a restart the next
augmentation, sampler shuffle, dropout mask and policy draw must equal the ones the
uninterrupted run would have made.  That needs the state of all generators in use:

* python ``random`` (samplers and transforms that use it),
* the numpy global generator (``np.random.*`` calls in data code and third-party libs),
* the torch CPU generator,
* the generator of every CUDA device when CUDA is available (never a hard-coded ``.cuda()``:
  on a CPU-only machine this part is simply absent).

The captured state holds only plain python values and torch tensors so it survives
``torch.save`` / ``torch.load(weights_only=True)`` without allow-listing numpy types.
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng_state", "restore_rng_state"]


def _numpy_state() -> dict[str, Any]:
    """The numpy global generator's state with the key array as an int64 tensor (weights_only friendly)."""
    name, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {
        "bit_generator": str(name),
        "key": torch.from_numpy(np.asarray(key, dtype=np.int64).copy()),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def _set_numpy_state(state: dict[str, Any]) -> None:
    key = state["key"]
    key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
    np.random.set_state(
        (state["bit_generator"], key.astype(np.uint32), int(state["pos"]), int(state["has_gauss"]),
         float(state["gauss"]))
    )


def capture_rng_state() -> dict[str, Any]:
    """Return the current state of python ``random``, numpy's global generator, torch CPU and all CUDA devices.

    The ``cuda`` entry is a list with one byte tensor per visible device, or ``None`` when
    CUDA is not available.  Capturing does not advance any generator.
    """
    cuda = None
    if torch.cuda.is_available():
        cuda = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state().clone(),
        "cuda": cuda,
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put every generator back to the state :func:`capture_rng_state` returned.

    Missing entries are left alone (a state written by an older version, or a partial dict).
    CUDA states are restored when CUDA is available now; if the device count differs from
    the one captured, the common prefix is restored and a warning says so, and a state
    captured with CUDA but restored without it only warns (the CPU generators are still
    exact, so a CPU-only continuation of a GPU run stays reproducible from here on).
    """
    if not isinstance(state, dict):
        raise TypeError(f"rng state must be the dict capture_rng_state() returns, got {type(state).__name__}")
    if state.get("python") is not None:
        py = state["python"]
        # torch.load may hand tuples back as lists; random.setstate needs the exact tuple shape.
        version, internal, gauss = py
        random.setstate((int(version), tuple(int(x) for x in internal), gauss))
    if state.get("numpy") is not None:
        _set_numpy_state(state["numpy"])
    if state.get("torch") is not None:
        torch.set_rng_state(state["torch"].to(device="cpu", dtype=torch.uint8))
    cuda = state.get("cuda")
    if cuda:
        if not torch.cuda.is_available():
            warnings.warn(
                f"rng state holds {len(cuda)} CUDA generator(s) but CUDA is not available; "
                "CPU generators restored, CUDA ones skipped",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        count = torch.cuda.device_count()
        if count != len(cuda):
            warnings.warn(
                f"rng state was captured on {len(cuda)} CUDA device(s), this process sees {count}; "
                f"restoring the first {min(count, len(cuda))}",
                RuntimeWarning,
                stacklevel=2,
            )
        for device, s in enumerate(cuda[:count]):
            torch.cuda.set_rng_state(s.to(device="cpu", dtype=torch.uint8), device)
