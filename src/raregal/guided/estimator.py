"""``GuidedSearch``: a scikit-learn style estimator that learns a class from a person's labels.

``GuidedSearch().fit(X, y)`` learns from the labels ``y`` (1 member, 0 not, -1 not labelled;
scikit-learn's convention for semi-supervised data) and scores every row of ``X`` (N, D);
``next_batch(n)`` is the ``n`` unlabelled rows to show next, best first. The same labels and
``random_state`` give the same order.
"""

from __future__ import annotations


import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from raregal.errors import InputError
from raregal.validation import Integer, Options, Seed, check_params, check_value
from raregal.guided.acquisition import ACQUISITIONS, choose_batch
from raregal.guided.learner import LEARNERS, learn_scores


def check_labels_vector(y, n_rows: int) -> np.ndarray:
    """``y`` as an int8 array (N,) of 1, 0 and -1; InputError when it is not that, has no member or
    leaves nothing unlabelled."""
    y = np.asarray(y)
    if y.shape != (n_rows,):
        raise InputError(f"y has shape {y.shape}; expected ({n_rows},), one label per row of X", param="y")
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.isin(y, (-1, 0, 1)).all()):
        raise InputError(f"y holds {y.dtype} values; expected 1 (member), 0 (not) or -1 (not labelled)", param="y")
    bad = ~np.isin(y, (-1, 0, 1))
    if bad.any():
        raise InputError(f"y holds {int(bad.sum())} values other than 1, 0, -1, e.g. {np.unique(y[bad])[:5].tolist()}",
                         param="y")
    y = y.astype(np.int8)
    if not (y == 1).any():
        raise InputError("no galaxy is labelled a member (1): the guided search needs at least one example",
                         param="y")
    if not (y == -1).any():
        raise InputError("every galaxy is labelled already: there is nothing left to show", param="y")
    return y


def check_finite(X, chunk: int = 1 << 20) -> None:
    """InputError naming the first rows of ``X`` (N, D) with NaN or inf (read in chunks: it may be memory-mapped)."""
    for start in range(0, len(X), chunk):
        bad = ~np.isfinite(np.asarray(X[start:start + chunk])).all(axis=1)
        if bad.any():
            rows = (start + np.flatnonzero(bad)[:5]).tolist()
            raise InputError(f"X has rows with NaN or inf values, e.g. rows {rows}; leave them out (raregal guide "
                             "does) or fix the embedding", param="X")


def check_batch(batch) -> int:
    """``batch`` (galaxies to show next) as a positive int; InputError otherwise."""
    check_value("batch", batch, Integer(1))
    return int(batch)


class GuidedSearch(BaseEstimator):
    """Learn a class of galaxies from labelled examples and rank the rest for a person to look at.

    Parameters
    ----------
    learner : ``"hybrid"`` (default), ``"nearest"`` or ``"linear"``: how scores are learnt
        (:mod:`raregal.guided.learner`).
    acquisition : ``"greedy"`` (default: highest scores first) or ``"diverse"`` (highest scores,
        no two of a batch nearer than the batch's typical neighbour spacing; see
        :mod:`raregal.guided.acquisition`).
    random_state : seed of the stand-in non-members the linear fit draws (None: fresh each fit).

    Attributes
    ----------
    scores_ : (N,) float32, higher = more likely a member (comparable within one fit only).
    labels_ : (N,) int8, the labels fitted (1, 0, -1).
    n_members_, n_non_members_ : int, counts of labelled rows.
    """

    def __init__(self, learner: str = "hybrid", acquisition: str = "greedy", random_state=None):
        self.learner = learner
        self.acquisition = acquisition
        self.random_state = random_state

    def _check_params(self) -> None:
        check_params(self.get_params(deep=False), {"learner": Options(*LEARNERS), "acquisition": Options(*ACQUISITIONS),
                                                   "random_state": Seed(none_ok=True)})

    def fit(self, X, y) -> "GuidedSearch":
        """Learn from ``y`` (N,: 1, 0, -1) over ``X`` (N, D, finite; memory-mapped arrays are read in chunks)."""
        self._check_params()
        if not isinstance(X, np.ndarray):  # a DataFrame, a list: rows, not columns, by position
            X = np.asarray(X, np.float32)
        if X.ndim != 2 or X.shape[1] < 1:
            raise InputError(f"X must be a 2-D array (N, D), got shape {X.shape}", param="X")
        y = check_labels_vector(y, X.shape[0])
        check_finite(X)
        self.labels_ = y
        self.scores_ = learn_scores(X, y, self.learner, self.random_state)
        self.n_members_, self.n_non_members_ = int((y == 1).sum()), int((y == 0).sum())
        self._X = X
        return self

    def next_batch(self, n: int) -> np.ndarray:
        """The ``n`` unlabelled rows (fewer when fewer are left) to show next, best first: (n,) int64."""
        check_is_fitted(self, "scores_")
        return choose_batch(self.scores_, self.labels_, check_batch(n), self.acquisition, self._X)
