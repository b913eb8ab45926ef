"""Cosine and correlation as Euclidean geometry: the one place rows are centred and normalised.

The search's thread-independent k-NN graphs (:func:`raregal.discovery.umap.exact_knn`,
:mod:`raregal.discovery.knn`) and every similarity
search (:mod:`raregal.similar`, :mod:`raregal.evaluation.encoders`) rank neighbours by Euclidean distance
between rows transformed here, so a cosine run is ranked by cosine everywhere.
"""

from __future__ import annotations

import numpy as np

from raregal.errors import InputError

#: Metrics ranked through Euclidean search on :func:`metric_space` rows.
METRICS = ("euclidean", "cosine", "correlation")


def metric_space(X: np.ndarray, metric: str) -> np.ndarray:
    """``X`` (N, D) as float32 rows whose Euclidean ranking is ``metric``'s ranking.

    ``cosine``: rows scaled to unit length; ``correlation``: rows centred, then scaled. On such
    rows the squared L2 distance is twice the metric's distance (:func:`metric_distance`). Each
    row is transformed on its own (no sums across rows), so the result does not depend on the
    thread count.
    """
    if metric not in METRICS:
        raise InputError(f"metric {metric!r}: nearest-neighbour search supports {', '.join(METRICS)}")
    X = np.asarray(X, dtype=np.float32)
    if metric == "correlation":
        X = X - X.mean(axis=1, keepdims=True)
    if metric in ("cosine", "correlation"):
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(X, dtype=np.float32)


def metric_distance(dist: np.ndarray, metric: str) -> np.ndarray:
    """Euclidean distances between rows of :func:`metric_space` as ``metric``'s own distances."""
    return np.asarray(dist, np.float64) ** 2 / 2 if metric in ("cosine", "correlation") else dist
