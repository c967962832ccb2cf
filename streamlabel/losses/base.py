"""Loss terms that sit beside the hybrid memory loss, chosen by name in the config (``loss.terms``).

Every method's extra loss (batch-hard triplet, NPLP centre-contrastive, DCML instance margin
spreading, INCLR inaccuracy-weighted KL ...) is a :class:`LossTerm` registered with
:func:`register_loss`. The trainer builds them from ``loss.terms: {name: {weight: w, <params>}}``,
adds ``w * term(batch)`` to the hybrid memory loss, and calls ``after_optimizer_step`` once the
weights have moved (a mean teacher updates there). Terms are ``nn.Module`` so their state (e.g. a
teacher's weights) goes into checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from streamlabel.keys import check_keys
from streamlabel.registry import Registry


@dataclass
class LossBatch:
    """What a loss term may look at for one iteration (features are L2-normalised, float32).

    ``target_labels`` are the policy's pseudo labels of the batch rows (-1 = outlier);
    ``outputs`` is the model's full train-mode output for the concatenated source + target images
    (``embedding`` and whatever else the model returns, e.g. ``parts``); ``images`` are those images
    and ``num_source`` says where the target rows begin; ``policy`` is the bank update policy (None
    during the source-only warm-up).
    """

    source_feats: torch.Tensor
    source_labels: torch.Tensor
    target_feats: torch.Tensor
    target_indices: torch.Tensor
    target_labels: torch.Tensor
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    images: torch.Tensor | None = None
    num_source: int = 0
    policy: object | None = None
    model: nn.Module | None = None
    target_entries: torch.Tensor | None = None  # policy.memory_entries()[0] of this iteration, if known


class LossTerm(nn.Module):
    """One additive loss; subclasses implement ``forward(batch) -> scalar``."""

    name: str = ""

    def forward(self, batch: LossBatch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def after_optimizer_step(self, model: nn.Module) -> None:
        """Called after every optimiser step (e.g. a mean teacher's EMA update); default: nothing."""


LOSSES: Registry[type[LossTerm]] = Registry("loss term", base=LossTerm)


def register_loss(name: str) -> Callable[[type[LossTerm]], type[LossTerm]]:
    """Class decorator: make a LossTerm buildable by ``name`` under ``loss.terms``."""
    register = LOSSES.register(name)

    def wrap(cls: type[LossTerm]) -> type[LossTerm]:
        register(cls)
        cls.name = name
        return cls

    return wrap


def available_losses() -> list[str]:
    """Names accepted under ``loss.terms``."""
    return LOSSES.names()


def loss_parameters(name: str) -> dict[str, object]:
    """Keyword parameters (and defaults) of a loss term, plus its ``weight``."""
    check_keys([name], LOSSES.names(), "loss terms (loss.terms)")
    return {"weight": 1.0, **LOSSES.parameters(name)}


class LossTerms(nn.Module):
    """The configured terms with their weights; ``forward`` returns each weighted term by name."""

    def __init__(self, spec: dict[str, dict] | None) -> None:
        super().__init__()
        spec = spec or {}
        check_keys(spec, LOSSES.names(), "loss terms (loss.terms)")
        self.terms = nn.ModuleDict()
        self.weights: dict[str, float] = {}
        for name, params in spec.items():
            params = dict(params or {})
            check_keys(params, loss_parameters(name), f"loss term {name!r}")
            self.weights[name] = float(params.pop("weight", 1.0))
            self.terms[name] = LOSSES.get(name)(**params)

    def forward(self, batch: LossBatch) -> dict[str, torch.Tensor]:
        return {name: self.weights[name] * term(batch) for name, term in self.terms.items()}

    def after_optimizer_step(self, model: nn.Module) -> None:
        for term in self.terms.values():
            term.after_optimizer_step(model)
