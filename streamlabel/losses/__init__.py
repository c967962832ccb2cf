"""Loss terms added to the hybrid memory loss, chosen by name in ``loss.terms``."""

from streamlabel.losses.base import (
    LossBatch,
    LossTerm,
    LossTerms,
    available_losses,
    loss_parameters,
    register_loss,
)
from streamlabel.losses.centre_contrastive import CentreContrastiveLoss

__all__ = [
    "CentreContrastiveLoss",
    "LossBatch",
    "LossTerm",
    "LossTerms",
    "available_losses",
    "loss_parameters",
    "register_loss",
]
