"""streamlabel.evaluation: retrieval metrics, re-ranking and pseudo-label quality metrics."""

from streamlabel.evaluation.label_quality import (
    ari,
    bcubed,
    contingency,
    label_quality_report,
    nmi,
    pairwise_f,
)

__all__ = [
    "ari",
    "bcubed",
    "contingency",
    "label_quality_report",
    "nmi",
    "pairwise_f",
]
