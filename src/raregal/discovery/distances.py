"""Distances, in one module: the metrics raregal takes, their check, and cosine and correlation
as Euclidean geometry (the one place rows are centred and normalised).

The search's thread-independent k-NN graphs (:func:`raregal.discovery.knn.exact_knn`,
:mod:`raregal.discovery.knn`) and every similarity
search (:mod:`raregal.similarity`, :mod:`raregal.evaluation.encoders`) rank neighbours by Euclidean distance
between rows transformed here, so a cosine run is ranked by cosine everywhere.
"""

from __future__ import annotations

import numpy as np

from raregal.validation import Options, check_value

#: Distances the search takes (UMAP's and scikit-learn's names for them).
METRICS = ("euclidean", "cosine", "manhattan", "correlation")
#: The metrics ranked by Euclidean search on :func:`metric_space` rows: every neighbour search of
#: raregal's own (the exact and inverted-file k-NN graphs, similar, evaluate, the guided search).
EUCLIDEAN_METRICS = ("euclidean", "cosine", "correlation")


def check_metric(metric, allowed: tuple[str, ...] = EUCLIDEAN_METRICS, name: str = "metric") -> str:
    """``metric`` if it is one of ``allowed``; else :class:`~raregal.errors.InputError` naming ``name``."""
    check_value(name, metric, Options(*allowed))
    return metric


def metric_space(X: np.ndarray, metric: str) -> np.ndarray:
    """``X`` (N, D) as float32 rows whose Euclidean ranking is ``metric``'s ranking.

    ``cosine``: rows scaled to unit length; ``correlation``: rows centred, then scaled. On such
    rows the squared L2 distance is twice the metric's distance (:func:`metric_distance`). Each
    row is transformed on its own (no sums across rows), so the result does not depend on the
    thread count.
    """
    check_metric(metric)
    X = np.asarray(X, dtype=np.float32)
    if metric == "correlation":
        X = X - X.mean(axis=1, keepdims=True)
    if metric in ("cosine", "correlation"):
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(X, dtype=np.float32)


def metric_distance(dist: np.ndarray, metric: str) -> np.ndarray:
    """Euclidean distances between rows of :func:`metric_space` as ``metric``'s own distances."""
    return np.asarray(dist, np.float64) ** 2 / 2 if metric in ("cosine", "correlation") else dist


def from_squared(d2: np.ndarray, metric: str) -> np.ndarray:
    """Squared Euclidean distances between :func:`metric_space` rows as ``metric``'s own distances.

    Unit rows (cosine, correlation): ``|u - v|^2 = 2 (1 - cos)``, so the distance is ``d2 / 2``.
    """
    return np.sqrt(d2) if metric == "euclidean" else d2 / 2.0
