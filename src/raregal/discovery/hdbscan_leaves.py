"""HDBSCAN leaf clusters of the reduced representation.

The paper clusters the 5-D UMAP with HDBSCAN, ``min_samples=300``, ``min_cluster_size=10``,
and takes the **leaf** nodes of the condensed tree as clusters: the smallest dense groups,
which is what a rare class looks like. Two real libraries do the work:

* ``fast_hdbscan`` (default): parallel numba, ~4× less memory than ``hdbscan``; its minimum spanning
  tree is rewritten by :mod:`raregal.discovery.canonical_tree`, so the labels do not depend on the threads;
* ``hdbscan`` with ``approx_min_span_tree=False`` (the exact reference; with the default
  approximate tree, which border points become noise changes).

Both give the same leaf labels on the same input (adjusted Rand index ≥ 0.99, checked in the
tests). Labels are renumbered canonically: cluster ``k`` is the ``k``-th leaf in the order of
its condensed-tree node id, so the two backends number clusters alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from raregal.validation import Integer, check_params
from raregal.workers import numba_threads

BACKENDS = ("fast_hdbscan", "hdbscan", "cuml")


@dataclass
class LeafClusters:
    """Result of :func:`leaf_clusters` for N points and K clusters."""

    labels: np.ndarray  # (N,) int64, -1 = noise
    probabilities: np.ndarray  # (N,) float32 membership strength in [0, 1]
    condensed_tree: pd.DataFrame  # parent, child, lambda_val, child_size
    tree_nodes: np.ndarray  # (K,) condensed-tree node id of each cluster
    persistence: np.ndarray  # (K,) hdbscan's cluster_persistence_ definition, in [0, 1]

    @property
    def n_clusters(self) -> int:
        return len(self.tree_nodes)


def _fit_fast_hdbscan(Y, min_samples, min_cluster_size, method):
    """fast_hdbscan's parallel Boruvka MST, made canonical, then its condensed tree and leaves.

    The Boruvka (:mod:`raregal.discovery.blocked_boruvka`: fast_hdbscan's, its start in blocks of
    rows, so no (N, min_samples + 1) neighbour arrays are held) runs on every numba thread; which of several tied minimum spanning trees it
    returns changes with the threads (on 2 threads 1 label in 1,500 flipped in 3 of 8 identical
    fits), so the tree is rewritten by :func:`raregal.discovery.canonical_tree.canonical_spanning_tree`
    before the hierarchy is built: the same labels, bit for bit, at any thread count
    (``tests/test_search.py``, ``tests/test_layout.py``).
    """
    from fast_hdbscan.hdbscan import clusters_from_spanning_tree, compute_minimum_spanning_tree, to_numpy_rec_array

    from raregal.discovery.canonical_tree import canonical_spanning_tree
    from raregal.numba_cache import cache_kernels

    cache_kernels("fast_hdbscan")
    check_params({"min_samples": min_samples, "min_cluster_size": min_cluster_size},
                 {"min_samples": Integer(1), "min_cluster_size": Integer(1)})
    if len(Y) < 2 or not np.isfinite(Y).all():  # fast_hdbscan's own handling of these cases
        import fast_hdbscan

        est = fast_hdbscan.HDBSCAN(min_samples=min_samples, min_cluster_size=min_cluster_size,
                                   cluster_selection_method=method, reproducible=True)
        with numba_threads(1):
            est.fit(Y)
        return est.labels_, est.probabilities_, est._condensed_tree
    if Y.shape[1] <= 30 and min_samples >= 2:  # fast_hdbscan's kd-tree Boruvka, started in blocks: the same tree
        from raregal.discovery.blocked_boruvka import spanning_tree

        tree = spanning_tree(Y, min_samples)
    else:
        tree, _, _ = compute_minimum_spanning_tree(Y, min_samples=min_samples, reproducible=True)
    labels, probabilities, _, condensed, _ = clusters_from_spanning_tree(
        canonical_spanning_tree(tree), min_cluster_size=min_cluster_size, cluster_selection_method=method)
    return labels, probabilities, to_numpy_rec_array(condensed)


def _fit_hdbscan(Y, min_samples, min_cluster_size, method):
    import hdbscan

    est = hdbscan.HDBSCAN(min_samples=min_samples, min_cluster_size=min_cluster_size,
                          cluster_selection_method=method, approx_min_span_tree=False,
                          core_dist_n_jobs=1)
    est.fit(Y)
    return est.labels_, est.probabilities_, est.condensed_tree_.to_numpy()


def _fit_cuml(Y, min_samples, min_cluster_size, method):  # pragma: no cover - needs a GPU
    from cuml.cluster import HDBSCAN

    est = HDBSCAN(min_samples=min_samples, min_cluster_size=min_cluster_size,
                  cluster_selection_method=method, gen_min_span_tree=False)
    est.fit(Y)
    labels = np.asarray(getattr(est.labels_, "get", lambda: est.labels_)())
    probs = np.asarray(getattr(est.probabilities_, "get", lambda: est.probabilities_)())
    return labels, probs, est.condensed_tree_.to_numpy()


def tree_frame(tree) -> pd.DataFrame:
    """A condensed tree (numpy record array) as a DataFrame with typed columns."""
    return pd.DataFrame({
        "parent": np.asarray(tree["parent"], dtype=np.int64),
        "child": np.asarray(tree["child"], dtype=np.int64),
        "lambda_val": np.asarray(tree["lambda_val"], dtype=np.float64),
        "child_size": np.asarray(tree["child_size"], dtype=np.int64),
    })


def n_clusters(labels) -> int:
    """K, the number of clusters in (N,) int labels numbered 0..K-1 (-1 = noise; 0 when there are none)."""
    labels = np.asarray(labels)
    return int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0


def leaf_nodes_of(labels: np.ndarray, tree: pd.DataFrame) -> np.ndarray:
    """Condensed-tree node of each cluster label 0..K-1: the node its points fell out of.

    A leaf has no child clusters, so every point of a leaf cluster is a direct child of the
    leaf node; the most common parent of a label's points is its node.
    """
    n = len(labels)
    points = tree[tree["child"] < n]
    parent_of = np.full(n, -1, dtype=np.int64)
    parent_of[points["child"].to_numpy()] = points["parent"].to_numpy()
    k = n_clusters(labels)
    nodes = np.empty(k, dtype=np.int64)
    for label in range(k):
        nodes[label] = np.bincount(parent_of[labels == label] - n).argmax() + n
    return nodes


def persistence_of(nodes: np.ndarray, sizes: np.ndarray, tree: pd.DataFrame) -> np.ndarray:
    """hdbscan's ``cluster_persistence_``: stability / (cluster size × the tree's largest lambda).

    Written out here because fast_hdbscan does not expose it; the definition follows
    ``hdbscan._hdbscan_tree.get_stability_scores`` so both backends report the same number.
    Stability of node c = Σ over its condensed-tree children (λ_child − λ_birth(c)) × size.
    """
    lam = tree["lambda_val"].to_numpy()
    max_lambda = lam.max() if len(lam) else 0.0
    births = dict(zip(tree["child"].to_numpy(), lam))
    out = np.ones(len(nodes))
    if not np.isfinite(max_lambda) or max_lambda == 0.0:  # as hdbscan: every cluster scores 1
        return out
    by_parent = tree.groupby("parent")
    for i, (node, size) in enumerate(zip(nodes, sizes)):
        rows = by_parent.get_group(node)
        birth = births.get(node, 0.0)
        stability = float(((rows["lambda_val"] - birth) * rows["child_size"]).sum())
        out[i] = stability / (size * max_lambda) if size else 1.0
    return out


def leaf_clusters(Y: np.ndarray, min_samples: int = 300, min_cluster_size: int = 10,
                  backend: str = "fast_hdbscan", cluster_selection_method: str = "leaf") -> LeafClusters:
    """Cluster ``Y`` (N, d) with HDBSCAN and return its leaf clusters.

    Parameters are named as in HDBSCAN (Campello et al. 2013; McInnes et al. 2017);
    ``cluster_selection_method="eom"`` gives the usual excess-of-mass clusters instead.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown HDBSCAN backend {backend!r}; choose from {BACKENDS}")
    fit = {"fast_hdbscan": _fit_fast_hdbscan, "hdbscan": _fit_hdbscan, "cuml": _fit_cuml}[backend]
    labels, probs, tree = fit(np.ascontiguousarray(Y, dtype=np.float64 if backend == "hdbscan" else np.float32),
                              min_samples, min_cluster_size, cluster_selection_method)
    labels = np.asarray(labels, dtype=np.int64)
    tree = tree_frame(tree)
    nodes = leaf_nodes_of(labels, tree)
    # canonical numbering: clusters in order of their tree node id
    order = np.argsort(nodes, kind="stable")
    remap = np.full(len(nodes) + 1, -1, dtype=np.int64)
    remap[order] = np.arange(len(nodes))
    labels = np.where(labels >= 0, remap[labels], -1)
    nodes = nodes[order]
    sizes = np.bincount(labels[labels >= 0], minlength=len(nodes))
    return LeafClusters(labels=labels, probabilities=np.asarray(probs, dtype=np.float32), condensed_tree=tree,
                        tree_nodes=nodes, persistence=persistence_of(nodes, sizes, tree))
