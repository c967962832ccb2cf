"""streamlabel.evaluation: retrieval metrics, re-ranking and pseudo-label quality metrics."""

from streamlabel.evaluation.label_quality import (
    ari,
    bcubed,
    contingency,
    label_quality_report,
    nmi,
    pairwise_f,
)
from streamlabel.evaluation.retrieval import evaluate_from_distances, evaluate_retrieval, pairwise_distance

__all__ = [
    "ari",
    "bcubed",
    "contingency",
    "evaluate_from_distances",
    "evaluate_retrieval",
    "label_quality_report",
    "nmi",
    "pairwise_distance",
    "pairwise_f",
]
