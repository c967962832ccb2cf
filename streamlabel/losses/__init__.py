"""Loss terms added to the hybrid memory loss, chosen by name in ``loss.terms``."""

from streamlabel.losses.base import (
    LossBatch,
    LossTerm,
    LossTerms,
    available_losses,
    loss_parameters,
    register_loss,
)

__all__ = ["LossBatch", "LossTerm", "LossTerms", "available_losses", "loss_parameters", "register_loss"]
