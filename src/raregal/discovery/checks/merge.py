"""Merge suggestions: pairs of clusters that may be one class split in two.

Leaf clustering (the paper's choice) finds the smallest dense groups, so a large class can come
out as several leaves. raregal proposes pairs for a person to judge; it never merges anything
itself. Two kinds of evidence, both reported for every proposed pair:

* **the condensed tree** (HDBSCAN's hierarchy): the two clusters are siblings or near
  relatives (tree distance = edges between their nodes through their lowest common ancestor;
  siblings are at distance 2). ``join_lambda`` is the density (λ = 1/distance) at which they
  separate, and ``join_density_ratio`` = ``join_lambda`` / the median λ at which their member
  points leave them: near 1, they separate at about the density of their own members (barely
  apart); near 0, they separate while still far sparser than their cores (well apart);
* **the representation**: the distance between their centroids relative to the median distance
  between all pairs of cluster centroids (``centroid_ratio``), and relative to their own spreads
  (``separation`` = distance / (rms radius a + rms radius b); below ~1 the clouds overlap).

All functions work on plain arrays and the condensed tree DataFrame
(``parent``, ``child``, ``lambda_val``, ``child_size``; point rows have ``child`` < N).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raregal.discovery.hdbscan_leaves import n_clusters

#: Proposed on the tree when the clusters are this close in the condensed tree (2 = siblings) …
MAX_TREE_DISTANCE = 2
#: … and they separate at this fraction of their members' typical density or more.
MIN_JOIN_DENSITY_RATIO = 0.0
#: Proposed on the representation when their centroids are closer than this fraction of the
#: median distance between cluster centroids.
MAX_CENTROID_RATIO = 0.25

COLUMNS = ["cluster_a", "cluster_b", "size_a", "size_b", "reason", "tree_distance", "join_lambda",
           "join_density_ratio", "centroid_distance", "centroid_ratio", "separation"]


def _cluster_parents(tree: pd.DataFrame) -> dict[int, int]:
    nodes = tree[tree["child_size"] > 1]
    return dict(zip(nodes["child"].astype(np.int64), nodes["parent"].astype(np.int64)))


def _path_to_root(node: int, parent: dict[int, int]) -> list[int]:
    path = [int(node)]
    while path[-1] in parent:
        path.append(int(parent[path[-1]]))
    return path


def tree_relations(tree: pd.DataFrame, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tree distance and joining λ of every pair of clusters.

    Parameters
    ----------
    tree : condensed tree (parent, child, lambda_val, child_size).
    nodes : (K,) condensed-tree node id of each cluster.

    Returns
    -------
    distance : (K, K) int, number of tree edges between the nodes (0 on the diagonal; -1 if a
        node is not in the tree).
    join_lambda : (K, K) float, λ at which the lowest common ancestor splits towards the two
        (the birth λ of its children on their paths); NaN on the diagonal or without a common ancestor.
    """
    parent = _cluster_parents(tree)
    births = dict(zip(tree.loc[tree["child_size"] > 1, "child"].astype(np.int64),
                      tree.loc[tree["child_size"] > 1, "lambda_val"]))
    paths = [_path_to_root(int(n), parent) for n in nodes]
    k = len(nodes)
    distance = np.full((k, k), -1, dtype=np.int64)
    join = np.full((k, k), np.nan)
    for i in range(k):
        distance[i, i] = 0
        depth_i = {n: d for d, n in enumerate(paths[i])}
        for j in range(i + 1, k):
            for dj, n in enumerate(paths[j]):
                if n in depth_i:
                    di = depth_i[n]
                    distance[i, j] = distance[j, i] = di + dj
                    # the child of the common ancestor on i's side was born where they separate
                    below = paths[i][di - 1] if di > 0 else paths[j][dj - 1]
                    join[i, j] = join[j, i] = births.get(below, np.nan)
                    break
    return distance, join


def member_lambdas(tree: pd.DataFrame, nodes: np.ndarray) -> np.ndarray:
    """(K,) median λ at which the points of each cluster node leave it (its members' density)."""
    points = tree[tree["child_size"] == 1]
    medians = points.groupby("parent")["lambda_val"].median()
    return np.array([float(medians.get(int(n), np.nan)) for n in nodes])


def centroid_evidence(X: np.ndarray, labels: np.ndarray, k: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid distances of clusters in representation space.

    Parameters
    ----------
    X : (N, D) representations of the clustered rows; labels : (N,) int, -1 = noise.

    Returns
    -------
    distance : (K, K) Euclidean distance between centroids (units of X).
    ratio : (K, K) distance / median distance over all pairs of clusters.
    separation : (K, K) distance / (rms radius of a + rms radius of b).
    """
    labels = np.asarray(labels, dtype=np.int64)
    k = n_clusters(labels) if k is None else k
    if k == 0:
        empty = np.zeros((0, 0))
        return empty, empty, empty
    X = np.asarray(X, dtype=np.float64)
    member = labels >= 0
    counts = np.bincount(labels[member], minlength=k).astype(float)
    sums = np.zeros((k, X.shape[1]))
    np.add.at(sums, labels[member], X[member])
    centroids = sums / np.maximum(counts, 1)[:, None]
    sq = ((X[member] - centroids[labels[member]]) ** 2).sum(axis=1)
    radius = np.sqrt(np.bincount(labels[member], weights=sq, minlength=k) / np.maximum(counts, 1))
    from scipy.spatial.distance import cdist

    distance = cdist(centroids, centroids)
    pairs = distance[np.triu_indices(k, 1)]
    typical = float(np.median(pairs)) if len(pairs) else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = distance / typical if typical and np.isfinite(typical) else np.full_like(distance, np.nan)
        separation = distance / (radius[:, None] + radius[None, :])
    return distance, ratio, separation


def merge_suggestions(X: np.ndarray, labels: np.ndarray, tree: pd.DataFrame, nodes: np.ndarray,
                      max_tree_distance: int = MAX_TREE_DISTANCE,
                      min_join_density_ratio: float = MIN_JOIN_DENSITY_RATIO,
                      max_centroid_ratio: float = MAX_CENTROID_RATIO) -> pd.DataFrame:
    """Pairs of clusters proposed as one class, with the evidence.

    Parameters
    ----------
    X : (N, D) representations of the clustered rows (the rows the tree's points index).
    labels : (N,) cluster of each row, -1 = noise; nodes : (K,) tree node of each cluster.
    tree : the condensed tree of that clustering.
    max_tree_distance, min_join_density_ratio : tree criterion (see the module docstring).
    max_centroid_ratio : representation criterion.

    Returns
    -------
    DataFrame with :data:`COLUMNS`, one row per proposed pair (``cluster_a < cluster_b``),
    ``reason`` = ``"tree"``, ``"centroids"`` or ``"tree+centroids"``; pairs with both kinds of
    evidence first, then by ``centroid_ratio`` (closest first). Empty (with the columns) when
    nothing is proposed.
    """
    labels = np.asarray(labels, dtype=np.int64)
    nodes = np.asarray(nodes, dtype=np.int64)
    k = len(nodes)
    if k < 2:
        return pd.DataFrame(columns=COLUMNS)
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    distance, join = tree_relations(tree, nodes)
    member_lam = member_lambdas(tree, nodes)
    cdist_, ratio, separation = centroid_evidence(X, labels, k)
    rows = []
    for i in range(k):
        for j in range(i + 1, k):
            with np.errstate(invalid="ignore", divide="ignore"):
                density_ratio = join[i, j] / np.nanmedian([member_lam[i], member_lam[j]])
            near = 0 < distance[i, j] <= max_tree_distance
            on_tree = bool(near and (not np.isfinite(density_ratio) or density_ratio >= min_join_density_ratio))
            on_centroids = bool(np.isfinite(ratio[i, j]) and ratio[i, j] <= max_centroid_ratio)
            if not (on_tree or on_centroids):
                continue
            rows.append({
                "cluster_a": i, "cluster_b": j, "size_a": int(sizes[i]), "size_b": int(sizes[j]),
                "reason": "+".join(r for r, ok in (("tree", on_tree), ("centroids", on_centroids)) if ok),
                "tree_distance": int(distance[i, j]), "join_lambda": float(join[i, j]),
                "join_density_ratio": float(density_ratio), "centroid_distance": float(cdist_[i, j]),
                "centroid_ratio": float(ratio[i, j]), "separation": float(separation[i, j]),
            })
    out = pd.DataFrame(rows, columns=COLUMNS)
    both = out["reason"].str.contains("+", regex=False)
    out = out.assign(_both=both).sort_values(["_both", "centroid_ratio", "cluster_a", "cluster_b"],
                                             ascending=[False, True, True, True], kind="stable")
    return out.drop(columns="_both").reset_index(drop=True)
