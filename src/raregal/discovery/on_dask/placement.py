"""Placing the galaxies the layout was not fitted on: map coordinates and a cluster, from their nearest fitted galaxies.

Each placed galaxy's ``n_neighbors`` nearest fitted galaxies in representation space (an
:class:`~raregal.discovery.knn.InvertedFile` over the fitted ones) are weighted as UMAP weighs a
new point's neighbours (``exp(-(d - rho) / sigma)``, umap-learn's ``smooth_knn_dist``), and

* its 5-D and 2-D coordinates are their weighted mean: how umap-learn's ``transform`` starts a new
  point, here without its optimisation epochs;
* it joins cluster ``c`` when the fitted neighbours in ``c`` carry at least ``min_vote`` of the
  weight, it is no farther from its nearest fitted member of ``c`` than ``c``'s members are from
  each other (``reach[c]``: the largest distance of a member to its nearest other fitted member;
  :func:`cluster_reach`) **and** it lies where the density is as high as at ``c``'s core members
  (its k-th neighbour distance in the whole table within the spread of ``c``'s members':
  ``core_log_dk[c]``, :func:`core_density`). Without the last test the
  galaxies of the sparser surroundings, which the density-biased sample thinned, would join a
  cluster in proportion to how much they were thinned. Its probability is the vote times those
  members' mean probability.

Why not HDBSCAN's ``approximate_predict``: it needs the reference ``hdbscan`` fit with prediction
data (raregal clusters with fast_hdbscan) and works in the 5-D map, where a placed point is only an
average of its neighbours; the vote is taken where galaxies are actually compared, the representation.
"""

from __future__ import annotations

import numpy as np

from raregal.discovery.distances import from_squared


def cluster_reach(labels: np.ndarray, indices: np.ndarray, distances: np.ndarray, n_clusters: int) -> np.ndarray:
    """(n_clusters,) float64: for each cluster, the largest distance of a fitted member to its nearest other member.

    ``indices``, ``distances``: the fitted rows' k-NN graph (self first). A member with no other
    member among its k neighbours counts with its k-th neighbour's distance.
    """
    reach = np.zeros(n_clusters)
    members = np.flatnonzero(labels >= 0)
    if len(members) == 0:
        return reach
    same = labels[indices[members, 1:]] == labels[members][:, None]
    first = np.where(same.any(axis=1), same.argmax(axis=1), same.shape[1] - 1)
    d = distances[members, 1:][np.arange(len(members)), first]
    np.maximum.at(reach, labels[members], d)
    return reach


def core_density(labels: np.ndarray, log_dk: np.ndarray, n_clusters: int, spread: float = 3.0) -> np.ndarray:
    """(n_clusters,) the densest-to-sparsest ``log_dk`` (log k-th neighbour distance) a placed galaxy may have to join each cluster.

    The members' median plus ``spread`` robust standard deviations (1.4826 MAD) of their ``log_dk``:
    a cluster's members lie at one density, the sparser surroundings it swallowed at its edge
    do not, and a maximum would let those in.
    """
    out = np.full(n_clusters, -np.inf)
    for c in range(n_clusters):
        member = log_dk[labels == c]
        if len(member):
            med = np.median(member)
            out[c] = med + spread * 1.4826 * np.median(np.abs(member - med))
    return out


def umap_weights(distances: np.ndarray) -> np.ndarray:
    """(q, k) normalised UMAP membership weights of each row's neighbours at ``distances`` (q, k)."""
    from umap.umap_ import smooth_knn_dist

    d = np.asarray(distances, dtype=np.float32)
    sigmas, rhos = smooth_knn_dist(d, float(d.shape[1]), local_connectivity=1.0)
    w = np.exp(-np.maximum(d - rhos[:, None], 0.0) / np.maximum(sigmas[:, None], 1e-12))
    return w / w.sum(axis=1, keepdims=True)


def vote(labels: np.ndarray, weights: np.ndarray, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best cluster among its neighbours' ``labels`` (q, k) and the weight it carries (q,)."""
    best = np.full(len(labels), -1, np.int64)
    share = np.zeros(len(labels))
    for s in range(0, len(labels), block):
        lab, w = labels[s:s + block], weights[s:s + block]
        votes = np.einsum("qjl,ql->qj", lab[:, :, None] == lab[:, None, :], w)  # weight of each neighbour's cluster
        votes[lab < 0] = -1.0
        j = votes.argmax(axis=1)
        best[s:s + block] = np.where(votes.max(axis=1) > 0, lab[np.arange(len(lab)), j], -1)
        share[s:s + block] = np.maximum(votes.max(axis=1), 0.0)
    return best, share


def place(Q: np.ndarray, log_dk: np.ndarray, index, fitted: dict, n_neighbors: int, metric: str = "euclidean",
          min_vote: float = 0.5) -> dict:
    """Coordinates and clusters of the rows ``Q`` (q, D) (in :func:`metric_space`) from the fitted rows.

    ``log_dk`` (q,): the rows' log k-th neighbour distance in the whole table. ``index``: an
    InvertedFile over the fitted rows; ``fitted``: their ``labels``, ``probabilities``, ``embedding``
    (5-D), ``embedding_2d`` (or None), ``reach`` (:func:`cluster_reach`) and ``core_log_dk``
    (:func:`core_density`).
    Returns ``labels`` (q,) int64, ``probabilities`` (q,) float32, ``embedding``, ``embedding_2d``.
    """
    k = min(n_neighbors, len(index.P))
    idx, d2 = index.search(Q, k)
    idx = np.maximum(idx, 0)  # fewer than k fitted rows cannot happen (k is capped), -1 never stays
    d = from_squared(d2, metric).astype(np.float32)
    w = umap_weights(d)
    out = {"embedding": np.einsum("qk,qkc->qc", w, fitted["embedding"][idx]).astype(np.float32),
           "embedding_2d": None if fitted["embedding_2d"] is None
           else np.einsum("qk,qkc->qc", w, fitted["embedding_2d"][idx]).astype(np.float32)}
    lab = fitted["labels"][idx]
    best, share = vote(lab, w)
    in_best = (lab == best[:, None]) & (best[:, None] >= 0)
    nearest = np.where(in_best, d, np.inf).min(axis=1)
    none = len(fitted["reach"])  # a last slot for "no cluster", which nothing reaches (also with no clusters)
    slot = np.where(best >= 0, best, none)
    reach = np.append(fitted["reach"], -np.inf)[slot]
    dense = log_dk <= np.append(fitted["core_log_dk"], -np.inf)[slot]
    joins = (best >= 0) & (share >= min_vote) & (nearest <= reach) & dense
    member_prob = (np.where(in_best, fitted["probabilities"][idx], 0.0) * w).sum(axis=1) / np.maximum(share, 1e-12)
    out["labels"] = np.where(joins, best, -1)
    out["probabilities"] = np.where(joins, share * member_prob, 0.0).astype(np.float32)
    return out
