"""streamlabel.evaluation: retrieval metrics, re-ranking and pseudo-label quality metrics."""

from streamlabel.evaluation.extract import extract_features
from streamlabel.evaluation.label_quality import (
    ari,
    bcubed,
    contingency,
    label_quality_report,
    nmi,
    pairwise_f,
)
from streamlabel.evaluation.reranking import (
    CSRRows,
    SparseJaccard,
    expanded_k_reciprocal,
    iter_rerank,
    k_reciprocal_neighbors,
    knn_sqeuclidean,
    local_query_expansion,
    reciprocal_encoding,
    rerank,
    sparse_jaccard,
)
from streamlabel.evaluation.retrieval import (
    NothingToScoreError,
    evaluate_from_distances,
    evaluate_retrieval,
    pairwise_distance,
    unscorable_reason,
)

__all__ = [
    "CSRRows",
    "NothingToScoreError",
    "SparseJaccard",
    "ari",
    "bcubed",
    "contingency",
    "evaluate_from_distances",
    "evaluate_retrieval",
    "expanded_k_reciprocal",
    "extract_features",
    "iter_rerank",
    "k_reciprocal_neighbors",
    "knn_sqeuclidean",
    "label_quality_report",
    "local_query_expansion",
    "nmi",
    "pairwise_distance",
    "pairwise_f",
    "reciprocal_encoding",
    "rerank",
    "sparse_jaccard",
    "unscorable_reason",
]
