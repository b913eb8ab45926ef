"""Which unlabelled galaxies to show next, from the learner's scores.

* ``greedy``: the highest scores (ties to the lower row, so the order is deterministic). For
  finding as many members as possible with few looks (recall), showing the most likely members
  is what measured best (``benchmarks/guided.py``).
* ``diverse``: the highest scores, skipping any galaxy nearer to one already in the batch than
  the median distance between the top candidates' neighbours: one look at each lump.
"""

from __future__ import annotations

import numpy as np

ACQUISITIONS = ("greedy", "diverse")
#: Candidates considered for a diverse batch, per galaxy of the batch.
POOL_PER_SLOT = 5


def top_unlabelled(scores: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` unlabelled rows (``y == -1``) with the highest ``scores``, best first (ties: lower row).

    O(N) (:func:`numpy.argpartition`), not a full sort: the labelled rows (a few hundred) are masked
    in a copy of the scores rather than the millions of unlabelled ones gathered.
    """
    masked = np.array(scores, dtype=np.float32, copy=True)
    masked[np.flatnonzero(y != -1)] = -np.inf
    n = min(n, int((y == -1).sum()))
    if n == 0:
        return np.zeros(0, np.int64)
    keep = np.argpartition(-masked, n - 1)[:n] if n < len(masked) else np.arange(len(masked))
    threshold = masked[keep].min()
    cand = np.flatnonzero(masked >= threshold)  # all rows tied at the threshold, so ties go to the lower row
    cand = cand[np.isfinite(masked[cand]) | (y[cand] == -1)]
    order = np.lexsort((cand, -masked[cand]))
    return cand[order[:n]].astype(np.int64)


def diverse(scores: np.ndarray, y: np.ndarray, n: int, X) -> np.ndarray:
    """Greedy over the best ``POOL_PER_SLOT * n`` candidates, skipping near-duplicates of those chosen."""
    pool = top_unlabelled(scores, y, POOL_PER_SLOT * n)
    P = np.asarray(X[np.sort(pool)], np.float64)[np.argsort(np.argsort(pool))]  # read forwards, keep pool order
    sq = (P ** 2).sum(axis=1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * P @ P.T, 0))  # (5n, 5n), not (5n, 5n, D)
    np.fill_diagonal(d, np.inf)
    spacing = np.median(d.min(axis=1)) if len(pool) > 1 else 0.0
    chosen: list[int] = []
    for i in range(len(pool)):
        if len(chosen) == n:
            break
        if not chosen or d[i, chosen].min() > spacing:
            chosen.append(i)
    rest = [i for i in range(len(pool)) if i not in chosen][: n - len(chosen)]  # too few apart: fill in order
    return pool[np.array(chosen + rest, dtype=np.int64)]


def choose_batch(scores: np.ndarray, y: np.ndarray, n: int, acquisition: str = "greedy", X=None) -> np.ndarray:
    """The ``n`` rows to show next, best first."""
    if acquisition == "diverse":
        return diverse(scores, y, n, X)
    return top_unlabelled(scores, y, n)
