"""What the guided search learns from a person's labels: a score for every galaxy.

Numeric code on plain arrays. ``X`` (N, D) is the representation in the metric's space
(:func:`raregal.distances.metric_space`), ``y`` (N,) holds 1 (member), 0 (not a member) and
-1 (not labelled), scikit-learn's convention for semi-supervised data. Every learner returns
``scores`` (N,), higher = more likely a member.

Learners (chosen by measurement, ``benchmarks/guided.py``; the table is in ``benchmarks/README.md``):

* ``nearest``: minus the distance to the nearest labelled member (what ``raregal similar`` does).
  Follows a class made of several lumps; ignores the non-members.
* ``linear``: a logistic regression (scikit-learn) of members against non-members. With few or
  no non-members the unlabelled galaxies stand in for them (a positive-unlabelled fit): a
  rare class is a few per cent of the table at most, so a random unlabelled galaxy is almost
  never a member.
* ``hybrid`` (default): the mean of the two scores' ranks. The nearest-member rank keeps each
  lump of a class in view; the linear rank uses what the non-members say.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

LEARNERS = ("hybrid", "nearest", "linear")
#: Unlabelled galaxies drawn as stand-in non-members for the linear fit (per labelled member, at least).
PSEUDO_PER_MEMBER = 20
PSEUDO_MIN = 200
#: Rows scored at once: bounds the (chunk, members) distance block to a few tens of MiB.
CHUNK = 65_536


def nearest_member_scores(X: np.ndarray, members: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """Minus the Euclidean distance of each row of ``X`` (N, D) to its nearest row of ``members`` (M, D)."""
    members = np.asarray(members, np.float32)
    m2 = (members.astype(np.float64) ** 2).sum(axis=1)
    out = np.empty(len(X), np.float32)
    for start in range(0, len(X), chunk):
        block = np.asarray(X[start:start + chunk], np.float32)
        d2 = (block.astype(np.float64) ** 2).sum(axis=1)[:, None] - 2.0 * (block @ members.T) + m2[None, :]
        out[start:start + len(block)] = -np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def linear_scores(X: np.ndarray, y: np.ndarray, rng: np.random.Generator, C: float = 1.0,
                  chunk: int = CHUNK) -> np.ndarray:
    """Decision function (N,) of a balanced logistic regression of members against non-members
    (topped up with unlabelled galaxies drawn by ``rng`` as stand-in non-members)."""
    from sklearn.linear_model import LogisticRegression

    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    unl = np.flatnonzero(y == -1)
    want = max(PSEUDO_MIN, PSEUDO_PER_MEMBER * len(pos)) - len(neg)
    if want > 0 and len(unl):
        neg = np.r_[neg, rng.choice(unl, size=min(want, len(unl)), replace=False)]
    rows = np.r_[pos, neg]
    target = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    mean = np.asarray(X[rows], np.float64).mean(axis=0)
    scale = np.asarray(X[rows], np.float64).std(axis=0) + 1e-6
    fit = LogisticRegression(C=C, class_weight="balanced", max_iter=2000)
    fit.fit((np.asarray(X[rows], np.float64) - mean) / scale, target)
    w = (fit.coef_[0] / scale).astype(np.float32)
    b = float(fit.intercept_[0] - (fit.coef_[0] * mean / scale).sum())
    out = np.empty(len(X), np.float32)
    for start in range(0, len(X), chunk):
        out[start:start + chunk] = np.asarray(X[start:start + chunk], np.float32) @ w + b
    return out


def ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks of ``scores`` scaled to [0, 1] (1 = highest; ties in row order, so it is deterministic)."""
    order = np.argsort(scores, kind="stable")
    out = np.empty(len(scores), np.float32)
    out[order] = np.arange(len(scores), dtype=np.float32) / max(len(scores) - 1, 1)
    return out


def learn_scores(X: np.ndarray, y: np.ndarray, learner: str = "hybrid", rng=None) -> np.ndarray:
    """Scores (N,) of every row of ``X`` (N, D) from the labels ``y`` (N,: 1, 0 or -1) with ``learner``."""
    if learner not in LEARNERS:
        raise InputError(f"learner {learner!r}: choose from {', '.join(LEARNERS)}", param="learner")
    rng = np.random.default_rng(rng)
    members = np.asarray(X[np.flatnonzero(y == 1)], np.float32)
    if learner == "nearest":
        return nearest_member_scores(X, members)
    if learner == "linear":
        return linear_scores(X, y, rng)
    return (ranks(nearest_member_scores(X, members)) + ranks(linear_scores(X, y, rng))) / 2
