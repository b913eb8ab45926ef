"""What the guided search learns from a person's labels: a score for every galaxy.

Numeric code on plain arrays. ``X`` (N, D) is the representation in the metric's space
(:func:`raregal.discovery.distances.metric_space`), ``y`` (N,) holds 1 (member), 0 (not a member) and
-1 (not labelled), scikit-learn's convention for semi-supervised data. Every learner returns
``scores`` (N,), higher = more likely a member.

Learners (chosen by measurement, ``benchmarks/guided.py``; the table is in ``benchmarks/README.md``):

* ``nearest``: minus the distance to the nearest labelled member, plus the distance to the
  nearest labelled non-member once there are some (a nearest-neighbour contrast). Follows a class
  made of several lumps, which ``raregal similar``'s nearest-member rule does too.
* ``linear``: a logistic regression (scikit-learn) of members against non-members. With few
  non-members the unlabelled galaxies stand in for them (a positive-unlabelled fit): a rare
  class is a few per cent of the table at most, so a random unlabelled galaxy is almost never a
  member.
* ``hybrid`` (default): a weighted mean of the two scores' ranks. Once there are :data:`CV_MIN`
  members and non-members, the weights are each learner's cross-validated ROC AUC on the labels
  (:func:`cv_weights`), so a class in several lumps, which no hyperplane holds, leans on
  ``nearest``, a class spread along a direction on ``linear``; before that, equal weights (which
  measured better in the first rounds than ``nearest`` alone, ``benchmarks/README.md``).

At the paper's base catalogue (8.7M x 128, memory-mapped) a round reads the table once in
chunks (:func:`score_pass`) and ranks without a full sort (:func:`ranks`).
"""

from __future__ import annotations

import numpy as np

from raregal.errors import InputError
from raregal.workers import single_blas_thread

LEARNERS = ("hybrid", "nearest", "linear")
#: Unlabelled galaxies drawn as stand-in non-members for the linear fit (per labelled member, at least).
PSEUDO_PER_MEMBER = 20
PSEUDO_MIN = 200
#: Rows scored at once: a (chunk, D) float32 block stays in the CPU's cache; fewer when many galaxies are
#: labelled, so that a thread's (chunk, members + non-members) block holds at most BLOCK_VALUES floats (16 MiB).
CHUNK = 16_384
BLOCK_VALUES = 1 << 22
#: Above this many rows, ranks are interpolated from a fixed sample of the scores (:func:`ranks`).
EXACT_RANKS = 1_000_000
RANK_BINS = 65_536
RANK_CHUNK = 1 << 20
#: Below this many rows a round runs BLAS on one thread (its products are small).
MANY_ROWS = 200_000
#: Non-members the nearest-neighbour contrast keeps: those nearest to the members (:func:`hard_non_members`).
HARD_NON_MEMBERS = 64
#: Folds of the cross-validation that weighs the hybrid's learners, and the labels it needs.
FOLDS = 3
CV_MIN = 4


class Scorer:
    """The fitted parts of the learners: members, non-members and the linear model ``(w, b)``.

    :meth:`score` reads ``X`` once, chunk by chunk, with one matrix product per chunk (the
    members, the non-members and ``w`` side by side), and returns the raw scores of each learner.
    """

    def __init__(self, members: np.ndarray, non_members: np.ndarray, w: np.ndarray | None, b: float = 0.0):
        members = np.asarray(members, np.float32)
        non_members = np.asarray(non_members, np.float32).reshape(-1, members.shape[1])
        self.n_members, self.n_non = len(members), len(non_members)
        self.has_linear, self.b = w is not None, float(b)
        parts = [members, non_members] + ([np.asarray(w, np.float32)[None, :]] if w is not None else [])
        self.columns = np.ascontiguousarray(np.vstack(parts).T)  # (D, M + K [+ 1])
        # |m|^2 / 2 of each member and non-member: d^2(x, m) = |x|^2 + 2 (|m|^2 / 2 - x.m)
        self.half_sq = 0.5 * np.einsum("ij,ij->i", members, members), 0.5 * np.einsum("ij,ij->i", non_members,
                                                                                       non_members)

    def score(self, X, chunk: int | None = None, nearest: bool = True) -> dict[str, np.ndarray]:
        """``{"nearest": (N,), "linear": (N,)}`` (those asked for and fitted) over the rows of ``X`` (N, D).

        Chunks run on the CPU's cores (:func:`in_chunks`); each writes its own rows, so the scores
        do not depend on the thread count.
        """
        width = self.columns.shape[1]
        chunk = chunk or max(256, min(CHUNK, BLOCK_VALUES // max(width, 1)))  # bounds each thread's (B, M + K)
        out = {"nearest": np.empty(len(X), np.float32)} if nearest else {}
        if self.has_linear:
            out["linear"] = np.empty(len(X), np.float32)

        def one(start: int, stop: int) -> None:
            block = np.asarray(X[start:stop], np.float32)
            G = block @ self.columns  # (B, M + K [+ 1])
            m, k = self.n_members, self.n_non
            if nearest:
                sq = np.einsum("ij,ij->i", block, block)
                near = -np.sqrt(np.maximum(sq + 2.0 * (self.half_sq[0] - G[:, :m]).min(axis=1), 0.0))
                if k:
                    near += np.sqrt(np.maximum(sq + 2.0 * (self.half_sq[1] - G[:, m:m + k]).min(axis=1), 0.0))
                out["nearest"][start:stop] = near
            if self.has_linear:
                out["linear"][start:stop] = G[:, -1] + self.b

        in_chunks(len(X), one, chunk)
        return out


def in_chunks(n: int, work, chunk: int) -> None:
    """Call ``work(start, stop)`` for consecutive chunks of ``range(n)``, on every usable core when there
    are several (:func:`raregal.workers.run_blocks`: BLAS on one thread, as the products are skinny,
    (chunk, D) x (D, a few), where BLAS's own threads only wait for each other)."""
    from raregal.workers import run_blocks, usable_cores

    starts = range(0, n, chunk)
    run_blocks(lambda start: work(start, min(n, start + chunk)), starts, usable_cores() if len(starts) >= 4 else 1)


def nearest_member_scores(X: np.ndarray, members: np.ndarray, chunk: int | None = None) -> np.ndarray:
    """Minus the Euclidean distance of each row of ``X`` (N, D) to its nearest row of ``members`` (M, D)."""
    return Scorer(members, np.zeros((0, np.shape(members)[1]), np.float32), None).score(X, chunk)["nearest"]


def hard_non_members(members: np.ndarray, non_members: np.ndarray, keep: int | None = None) -> np.ndarray:
    """The ``keep`` (:data:`HARD_NON_MEMBERS`) non-members nearest to any member, in their original order.

    The contrast of the ``nearest`` learner matters where members are: a candidate near the class
    is told apart by the non-members labelled near it, while a non-member far from every member is
    never the nearest one of a good candidate. Keeping only these bounds a round's distance work
    (N x (members + non-members) x D) as a person labels hundreds of non-members; used above
    :data:`EXACT_RANKS` rows (on the demo survey, where it is not used, it would cost 0.004 of mean
    recall at 200 shown: 0.832 instead of 0.836, 10 start draws).
    """
    keep = HARD_NON_MEMBERS if keep is None else keep
    if len(non_members) <= keep or not len(members):
        return non_members
    d = Scorer(members, np.zeros((0, members.shape[1]), np.float32), None).score(non_members)["nearest"]
    picked = np.sort(np.lexsort((np.arange(len(d)), -d))[:keep])  # nearest first (scores are minus distances)
    return non_members[picked]


def fit_linear(X, y: np.ndarray, rng: np.random.Generator, C: float = 1.0) -> tuple[np.ndarray, float]:
    """``(w, b)`` of a balanced logistic regression of members against non-members (topped up with
    unlabelled galaxies drawn by ``rng`` as stand-in non-members), in ``X``'s own units."""
    from sklearn.linear_model import LogisticRegression

    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    want = max(PSEUDO_MIN, PSEUDO_PER_MEMBER * len(pos)) - len(neg)
    if want > 0:
        neg = np.r_[neg, _draw_unlabelled(y, want, rng)]
    rows = np.sort(np.r_[pos, neg])  # sorted: a memory-mapped table is read forwards
    A = np.asarray(X[rows], np.float64)
    target = (y[rows] == 1).astype(np.int8)
    mean, scale = A.mean(axis=0), A.std(axis=0) + 1e-6
    fit = LogisticRegression(C=C, class_weight="balanced", max_iter=2000).fit((A - mean) / scale, target)
    w = fit.coef_[0] / scale
    return w.astype(np.float32), float(fit.intercept_[0] - (w * mean).sum())


def _draw_unlabelled(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` distinct unlabelled rows, drawn by ``rng`` (rejection: O(n), not O(N), for a rare labelled set)."""
    n_unl = int((y == -1).sum())
    if n_unl <= 4 * n:
        unl = np.flatnonzero(y == -1)
        return rng.choice(unl, size=min(n, len(unl)), replace=False)
    picked = np.zeros(0, np.int64)
    while len(picked) < n:
        draw = rng.integers(0, len(y), size=2 * n)
        picked = np.unique(np.r_[picked, draw[y[draw] == -1]])
    return rng.permutation(picked)[:n]


def ranks(scores: np.ndarray) -> np.ndarray:
    """The fraction of rows scoring below each row, in [0, 1] (1 = highest).

    Exact (a sort; among tied scores the lower row ranks higher) up to :data:`EXACT_RANKS` rows. Above, from a
    histogram of :data:`RANK_BINS` equal bins between the lowest and highest score, interpolated
    linearly within each bin (so still strictly increasing in the score): O(N) arithmetic, no
    sort and no binary search, which at 8.7M rows take a second each on this machine.
    """
    n = len(scores)
    if n <= EXACT_RANKS:
        order = np.lexsort((-np.arange(n), scores))  # ties: the lower row ranks higher, as in the batch order
        out = np.empty(n, np.float32)
        out[order] = np.arange(n, dtype=np.float32) / max(n - 1, 1)
        return out
    lo, hi = float(scores.min()), float(scores.max())
    scale = np.float32(RANK_BINS / max(hi - lo, 1e-30))
    idx = np.empty(n, np.int32)
    frac = np.empty(n, np.float32)

    def bins(start: int, stop: int) -> None:
        pos = (scores[start:stop] - np.float32(lo)) * scale
        idx[start:stop] = np.minimum(pos.astype(np.int32), RANK_BINS - 1)
        frac[start:stop] = pos - idx[start:stop]

    in_chunks(n, bins, RANK_CHUNK)
    hist = np.bincount(idx, minlength=RANK_BINS).astype(np.float32)
    below = np.r_[np.float32(0), np.cumsum(hist, dtype=np.float64)[:-1].astype(np.float32)]
    out = np.empty(n, np.float32)

    def rank(start: int, stop: int) -> None:
        i = idx[start:stop]
        out[start:stop] = (below[i] + frac[start:stop] * hist[i]) / np.float32(n)

    in_chunks(n, rank, RANK_CHUNK)
    return out


def cv_weights(X, y: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """Each learner's weight in the hybrid: its ROC AUC on held-out labels (``FOLDS``-fold, stratified)
    above chance, squared; equal weights until there are ``CV_MIN`` members and non-members."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    labelled = np.flatnonzero(y >= 0)
    if min((y == 1).sum(), (y == 0).sum()) < CV_MIN:
        return {"nearest": 1.0, "linear": 1.0}
    auc = {"nearest": [], "linear": []}
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=int(rng.integers(2**31)))
    A = np.asarray(X[labelled], np.float32)
    for train, test in folds.split(A, y[labelled]):
        y_train = np.full(len(y), -1, np.int8)
        y_train[labelled[train]] = y[labelled[train]]
        y_train[labelled[test]] = -2  # held out: neither a label nor a stand-in non-member
        scorer = Scorer(A[train][y[labelled[train]] == 1], A[train][y[labelled[train]] == 0],
                        *fit_linear(X, y_train, rng))
        got = scorer.score(A[test])
        for name in auc:
            auc[name].append(roc_auc_score(y[labelled[test]], got[name]))
    return {name: float(max(np.mean(v) - 0.5, 0.0) ** 2 + 1e-3) for name, v in auc.items()}


def learn_scores(X, y: np.ndarray, learner: str = "hybrid", rng=None) -> np.ndarray:
    """Scores (N,) of every row of ``X`` (N, D) from the labels ``y`` (N,: 1, 0 or -1) with ``learner``."""
    if learner not in LEARNERS:
        raise InputError(f"learner {learner!r}: choose from {', '.join(LEARNERS)}", param="learner")
    if len(X) < MANY_ROWS:  # small products only: extra BLAS threads would just wait for each other
        with single_blas_thread():
            return _learn_scores(X, y, learner, np.random.default_rng(rng))
    return _learn_scores(X, y, learner, np.random.default_rng(rng))


def _learn_scores(X, y: np.ndarray, learner: str, rng: np.random.Generator) -> np.ndarray:
    near = learner != "linear"
    members = np.asarray(X[np.flatnonzero(y == 1) if near else []], np.float32).reshape(-1, X.shape[1])
    non_members = np.asarray(X[np.flatnonzero(y == 0) if near else []], np.float32).reshape(-1, X.shape[1])
    if len(X) > EXACT_RANKS:  # a large table: bound the distance work
        non_members = hard_non_members(members, non_members)
    w, b = fit_linear(X, y, rng) if learner != "nearest" else (None, 0.0)
    raw = Scorer(members, non_members, w, b).score(X, nearest=near)
    if learner != "hybrid":
        return raw[learner]
    weights = cv_weights(X, y, rng)
    total = sum(weights.values())
    return sum(weights[k] / total * ranks(raw[k]) for k in weights).astype(np.float32)
