"""The inverted-file k-NN graph split by cell, so each piece can run on another machine.

One machine's graph (:func:`raregal.discovery.knn.partitioned_knn`) compares each row with the
rows of its ``n_probe`` nearest cells. Split by cell, it is the same computation:

1. ``centroids``: the same seeded sample of rows, the same k-means (:func:`sample_rows` names
   the rows, wherever they are stored), so the cells are one machine's;
2. per partition of the rows: each row's probed cells (:func:`partition_probes`);
3. cells are grouped into blocks of nearby cells (:func:`cell_blocks`); a block's queries are the
   rows whose own cell is in it, its references the rows of every cell those queries probe
   (:func:`probed_cells`, :func:`cut_piece` takes them from one partition);
4. per block: an :class:`~raregal.discovery.knn.InvertedFile` over its references, searched
   for its queries (:func:`block_knn`). A row's result depends only on the rows of its probed
   cells, visited in the same order as on one machine.

So the graph is one machine's, with two exceptions stated where they happen: a query whose
probed cells hold fewer rows than it needs is searched exactly among the block's references
(one machine scans every row), and float32 products may round differently in differently shaped
products. Every function here takes and returns arrays; :mod:`raregal.discovery.on_dask.search`
runs them as Dask tasks.
"""

from __future__ import annotations

import warnings

import numpy as np

from raregal.discovery.distances import from_squared
from raregal.discovery.knn import InvertedFile, _centroids, _nearest_centroids, centroid_rows, default_lists


def sample_rows(n_rows: int, n_lists: int, random_state: int) -> np.ndarray | None:
    """The kept-row indices one machine's k-means sees (None: all rows), wherever the rows are stored."""
    return centroid_rows(n_rows, n_lists, random_state)


def fit_centroids(sample: np.ndarray, n_lists: int, random_state: int) -> np.ndarray:
    """(n_lists, D) centroids of the rows :func:`sample_rows` named (all rows when it named none)."""
    return _centroids(sample, n_lists, random_state, per_list=max(1, -(-len(sample) // n_lists)))


def n_cells(n_rows: int) -> int:
    return min(n_rows, default_lists(n_rows))


def cell_blocks(centroids: np.ndarray, n_blocks: int, random_state: int) -> np.ndarray:
    """(n_lists,) the block of each cell: k-means of the centroids, so a block's cells are near each other."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    n_blocks = max(1, min(n_blocks, len(centroids)))
    if n_blocks == 1:
        return np.zeros(len(centroids), np.int32)
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=n_blocks, n_init=1, max_iter=20, random_state=random_state).fit(centroids)
    return km.labels_.astype(np.int32)


def partition_probes(P: np.ndarray, centroids: np.ndarray, n_probe: int) -> np.ndarray:
    """(n, n_probe) int32 probed cells of each row of ``P``, its own cell first."""
    if len(P) == 0:
        return np.zeros((0, min(n_probe, len(centroids))), np.int32)
    return _nearest_centroids(np.ascontiguousarray(P, dtype=np.float32), centroids, min(n_probe, len(centroids)))


def probed_cells(probes: np.ndarray, block_of_cell: np.ndarray, n_blocks: int) -> np.ndarray:
    """(n_blocks, n_lists) bool: the cells that the rows of each block (by own cell) probe."""
    need = np.zeros((n_blocks, len(block_of_cell)), bool)
    if len(probes):
        rows = np.repeat(block_of_cell[probes[:, 0]], probes.shape[1])
        need[rows, probes.ravel()] = True
    return need


def cut_piece(P: np.ndarray, probes: np.ndarray, offset: int, needed: np.ndarray, block: np.ndarray) -> dict:
    """What one partition gives one block: its rows whose own cell the block ``needed`` (n_lists,) bool.

    Returns ``index`` (global row numbers, ``offset`` + local), ``P``, ``cell`` (own cell) and, for
    the rows whose own cell is in ``block`` (n_lists,) bool (the block's queries), ``probes``.
    """
    home = probes[:, 0]
    rows = np.flatnonzero(needed[home])
    query = block[home[rows]]
    return {"index": offset + rows.astype(np.int64), "P": P[rows], "cell": home[rows], "query": query,
            "probes": probes[rows[query]]}


def block_knn(pieces: list[dict], centroids: np.ndarray, n_probe: int, n_neighbors: int, metric: str,
              margin: int = 16) -> dict:
    """The k-NN rows of one block's queries: ``index`` (q,) global rows, ``indices`` (q, k) int64 global
    neighbours (self first), ``distances`` (q, k) float32, as one machine's graph has them."""
    index = np.concatenate([p["index"] for p in pieces])
    order = np.argsort(index, kind="stable")  # the whole index's row order (partitions arrive in any order)
    P = np.concatenate([p["P"] for p in pieces])[order]
    cell = np.concatenate([p["cell"] for p in pieces])[order]
    is_query = np.concatenate([p["query"] for p in pieces])[order]
    probes = np.concatenate([p["probes"] for p in pieces])
    q_index = np.concatenate([p["index"][p["query"]] for p in pieces])
    probes = probes[np.argsort(q_index, kind="stable")]
    index = index[order]
    queries = np.flatnonzero(is_query)
    ivf = InvertedFile.with_cells(P, centroids, cell, n_probe)
    local, d2 = ivf.search(P[queries], n_neighbors + margin, probes=probes, self_index=queries, keep=n_neighbors,
                           dtypes=(np.int64, np.float32), transform=lambda d: from_squared(d, metric))
    found = np.where(local >= 0, index[np.maximum(local, 0)], -1)
    return {"index": index[queries], "indices": found, "distances": d2}
