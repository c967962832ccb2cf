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
from streamlabel.losses.ims import InstanceMarginSpreadingLoss
from streamlabel.losses.inaccuracy import InaccuracyKLLoss
from streamlabel.losses.part_ce import PartCELoss
from streamlabel.losses.triplet import TripletLoss

__all__ = [
    "CentreContrastiveLoss",
    "InaccuracyKLLoss",
    "InstanceMarginSpreadingLoss",
    "LossBatch",
    "LossTerm",
    "LossTerms",
    "PartCELoss",
    "TripletLoss",
    "available_losses",
    "loss_parameters",
    "register_loss",
]
