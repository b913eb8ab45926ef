"""'More like this': nearest neighbours in representation space, with faiss.

An exact L2 index (``faiss.IndexFlatL2``) over the kept galaxies' representation vectors; a
query for 632k x 128-d vectors takes tens of milliseconds on one core, fast enough per click
without an approximate index. (A fuller similarity search, ``raregal.similar``, may replace it.)
"""

from __future__ import annotations

import numpy as np


class NeighbourIndex:
    """Exact nearest neighbours of rows of ``X`` (N, D) float32; rows where ``valid`` is False are left out."""

    def __init__(self, X: np.ndarray, valid: np.ndarray | None = None):
        import faiss

        X = np.ascontiguousarray(X, dtype=np.float32)
        self.valid = np.ones(len(X), bool) if valid is None else np.asarray(valid, bool)
        self.rows = np.flatnonzero(self.valid)  # index position -> row
        self.X = X
        self.index = faiss.IndexFlatL2(X.shape[1])
        if len(self.rows):
            self.index.add(X[self.rows])

    def query(self, row: int, k: int = 12) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows nearest ``row`` (itself excluded) and their Euclidean distances, nearest first."""
        if not self.valid[row] or not len(self.rows):
            return np.zeros(0, np.int64), np.zeros(0)
        dist2, pos = self.index.search(self.X[row:row + 1], min(k + 1, len(self.rows)))
        pos, dist2 = pos[0], dist2[0]
        keep = (pos >= 0)
        rows, dist = self.rows[pos[keep]], np.sqrt(np.maximum(dist2[keep], 0))
        other = rows != row
        return rows[other][:k], dist[other][:k]
