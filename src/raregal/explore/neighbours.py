"""'More like this' for one clicked galaxy: its nearest neighbours in representation space.

A thin adapter over :class:`raregal.similar.NeighbourSearch` with faiss's exact ``IndexFlatL2``
(a query over 632k x 128-d vectors takes tens of milliseconds on one core, fast enough per
click without an approximate index). It adds what the explorer needs: rows with a non-finite
representation are left out, and answers are rows of the explorer's table.
"""

from __future__ import annotations

import numpy as np

from ..similar import NeighbourSearch


class NeighbourIndex:
    """Exact nearest neighbours of rows of ``X`` (N, D) float32; rows where ``valid`` is False are left out."""

    def __init__(self, X: np.ndarray, valid: np.ndarray | None = None):
        self.valid = np.ones(len(X), bool) if valid is None else np.asarray(valid, bool)
        self.rows = np.flatnonzero(self.valid)  # index position -> row
        self.search = NeighbourSearch(np.asarray(X)[self.rows], kind="flat") if len(self.rows) else None

    def query(self, row: int, k: int = 12) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows nearest ``row`` (itself excluded) and their Euclidean distances, nearest first."""
        if self.search is None or not self.valid[row]:
            return np.zeros(0, np.int64), np.zeros(0)
        position = int(np.searchsorted(self.rows, row))
        dist, pos = self.search.search(self.search.X[position:position + 1], k + 1)
        keep = pos[0] >= 0
        rows, dist = self.rows[pos[0][keep]], dist[0][keep]
        other = rows != row
        return rows[other][:k], dist[other][:k]
