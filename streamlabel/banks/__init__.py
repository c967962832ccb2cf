"""Feature and label banks that live on the training device."""

from streamlabel.banks.feature_bank import FeatureBank
from streamlabel.banks.knn import topk_inner_product
from streamlabel.banks.knn_graph import KnnGraph
from streamlabel.banks.label_bank import HierarchicalLabelBank, InvariantError

__all__ = ["FeatureBank", "HierarchicalLabelBank", "InvariantError", "KnnGraph", "topk_inner_product"]
