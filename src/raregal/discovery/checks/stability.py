"""Cluster stability: how well each cluster survives re-running UMAP + HDBSCAN with other seeds.

UMAP's layout is stochastic, so the paper's clusters depend a little on the seed. raregal
repeats the reduction and clustering ``K`` times with seeds ``seed+1 … seed+K`` (the k-NN
graph is reused from the main run, so only the UMAP layout and the HDBSCAN clustering of it
are redone: the score measures the layout's randomness, at a fraction of a full run), matches each cluster of the
main run to its best counterpart in every repeat by the Jaccard index of their members, and
scores the cluster by the mean of those best Jaccard values (Hennig 2007, "Cluster-wise
assessment of cluster stability", uses the same score with bootstrap resampling instead of
seeds). Hennig's rule of thumb: a mean Jaccard below 0.6 should not be trusted, 0.6-0.75
indicates a pattern with uncertain membership, above 0.75 is stable. raregal flags clusters
below :data:`UNSTABLE_BELOW` as unstable.

All functions work on plain arrays: labels are int arrays over the same rows, -1 = noise.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics.cluster import contingency_matrix

from raregal.discovery.hdbscan_leaves import n_clusters


log = logging.getLogger("raregal")

#: Clusters whose stability (mean best Jaccard) is below this are flagged unstable (Hennig 2007).
UNSTABLE_BELOW = 0.6


def jaccard_matrix(labels_a: np.ndarray, labels_b: np.ndarray) -> np.ndarray:
    """Jaccard index of every cluster of ``a`` with every cluster of ``b``.

    Parameters
    ----------
    labels_a, labels_b : (N,) int cluster labels of the same N rows; -1 (noise) is no cluster.

    Returns
    -------
    (K_a, K_b) float array, entry [i, j] = |A_i ∩ B_j| / |A_i ∪ B_j| for clusters numbered
    0..K-1 (K = max label + 1; a label with no members gives a row/column of zeros).
    """
    a = np.asarray(labels_a, dtype=np.int64)
    b = np.asarray(labels_b, dtype=np.int64)
    if a.shape != b.shape:
        raise ValueError(f"label arrays differ in shape: {a.shape} vs {b.shape}")
    ka, kb = n_clusters(a), n_clusters(b)
    if ka == 0 or kb == 0:
        return np.zeros((ka, kb))
    both = (a >= 0) & (b >= 0)
    # counts of each (a, b) pair among rows clustered in both runs; shift so labels index directly
    inter = np.zeros((ka, kb))
    if both.any():
        table = contingency_matrix(a[both], b[both], sparse=False)
        ua, ub = np.unique(a[both]), np.unique(b[both])
        inter[np.ix_(ua, ub)] = table
    size_a = np.bincount(a[a >= 0], minlength=ka).astype(float)
    size_b = np.bincount(b[b >= 0], minlength=kb).astype(float)
    union = size_a[:, None] + size_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def best_jaccard(labels_main: np.ndarray, labels_other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each cluster of the main run, its best Jaccard match in another run.

    Returns ``(score, match)``, each of shape (K_main,): the highest Jaccard index and the
    label of the matching cluster in ``labels_other`` (-1 and score 0 when the other run has
    no cluster sharing a member).
    """
    jac = jaccard_matrix(labels_main, labels_other)
    k = jac.shape[0]
    if jac.shape[1] == 0:
        return np.zeros(k), np.full(k, -1, dtype=np.int64)
    match = jac.argmax(axis=1).astype(np.int64)
    score = jac[np.arange(k), match]
    match[score == 0] = -1
    return score, match


@dataclass
class Stability:
    """Stability of K clusters over R repeats."""

    scores: np.ndarray  # (K,) mean best Jaccard over the repeats, in [0, 1]
    per_repeat: np.ndarray  # (R, K) best Jaccard in each repeat
    matches: np.ndarray  # (R, K) matched label in each repeat (-1: none)
    seeds: list[int] = field(default_factory=list)  # (R,) seed of each repeat
    n_clusters_per_repeat: list[int] = field(default_factory=list)
    seconds_per_repeat: list[float] = field(default_factory=list)
    unstable_below: float = UNSTABLE_BELOW

    @property
    def unstable(self) -> np.ndarray:
        """(K,) bool, True where the score is below ``unstable_below``."""
        return self.scores < self.unstable_below


def score_against(labels_main: np.ndarray, repeats: list[np.ndarray],
                  unstable_below: float = UNSTABLE_BELOW) -> Stability:
    """Score each cluster of ``labels_main`` (N,) by its mean best Jaccard over ``repeats`` (R × (N,))."""
    labels_main = np.asarray(labels_main, dtype=np.int64)
    k = n_clusters(labels_main)
    if not repeats:
        raise ValueError("stability needs at least one repeated clustering")
    scores, matches = zip(*(best_jaccard(labels_main, r) for r in repeats)) if k else ((), ())
    per = np.vstack(scores) if k else np.zeros((len(repeats), 0))
    match = np.vstack(matches) if k else np.zeros((len(repeats), 0), dtype=np.int64)
    return Stability(scores=per.mean(axis=0), per_repeat=per, matches=match,
                     n_clusters_per_repeat=[n_clusters(r) for r in repeats],
                     unstable_below=unstable_below)


def repeat_seeds(seed: int, repeats: int) -> list[int]:
    """The seeds of the stability repeats: ``seed+1 … seed+repeats`` (never the main run's)."""
    return [int(seed) + i for i in range(1, int(repeats) + 1)]


def cluster_stability(est, X: np.ndarray, repeats: int = 5, unstable_below: float = UNSTABLE_BELOW,
                      progress: bool = True) -> Stability:
    """Stability of the clusters of a fitted :class:`raregal.discovery.estimator.RareClassSearch`.

    Each repeat is ``est.refit_layout(X, seed)``: a clone with another ``random_state`` whose UMAP
    layout and HDBSCAN clustering are refitted on ``est``'s own k-NN graph.

    Parameters
    ----------
    est : fitted estimator (its ``labels_``, ``knn_`` and an int ``random_state``).
    X : (N, D) the array it was fitted on.
    repeats : number of extra seeds K (``random_state+1 … random_state+K``).

    Returns a :class:`Stability` with one score per cluster of ``est``.
    """
    if getattr(est, "knn_", None) is None:
        raise ValueError("the estimator has no k-NN graph (knn_); fit it first")
    seeds = repeat_seeds(est._seed(), repeats)
    labels, seconds = [], []
    iterator = seeds
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(seeds, desc="stability", unit="repeat", leave=False)
    for s in iterator:
        t0 = time.perf_counter()
        labels.append(est.refit_layout(X, s).labels_)
        seconds.append(time.perf_counter() - t0)
        log.debug("stability repeat seed %d: %d clusters in %.1f s", s, n_clusters(labels[-1]), seconds[-1])
    result = score_against(est.labels_, labels, unstable_below)
    result.seeds = seeds
    result.seconds_per_repeat = [round(s, 3) for s in seconds]
    return result
