"""One round of the guided search on a run or a table: labels in, the next galaxies to show out.

:func:`guide` is what ``raregal guide`` and the explorer's "next to label" strip call: it loads the
representation table the way ``raregal similar`` does (:func:`raregal.similarity.load_source`: every
row, also those the pre-filter removed, in the run's ``features`` and ``metric``), checks the
labels against it before any compute (:mod:`raregal.guided.labels`), fits a
:class:`~raregal.guided.estimator.GuidedSearch` and returns the next batch with what is known of
each galaxy (sky position, image, cluster).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raregal.inputs.tables import ID
from raregal.errors import InputError
from raregal.guided.estimator import GuidedSearch, check_batch
from raregal.guided.labels import check_labels, labels_vector, pick_class, read_labels

log = logging.getLogger("raregal")


@dataclass
class GuideResult:
    """The answer of :func:`guide`.

    ``next``: the galaxies to show next, best first (``id_str``, ``rank``, ``score``, then ``ra``,
    ``dec``, ``file_loc``, ``cluster``, ``kept`` when known); ``scores``: every galaxy with a
    representation (``id_str``, ``score``, ``label``: 1, 0 or -1 = not labelled); ``estimator``:
    the fitted :class:`GuidedSearch`; ``class_name``: the class the labels were for.
    """

    next: pd.DataFrame
    scores: pd.DataFrame
    estimator: GuidedSearch
    class_name: str


def _labels(labels, source, class_name):
    """The checked labels of one class, and its name, from a path, a DataFrame or (None) the run's store."""
    if labels is None:
        from raregal.guided.store import LabelStore

        if isinstance(source, pd.DataFrame):
            raise InputError("a table of labels is needed when the source is a table (--labels)")
        labels = LabelStore(source).read()
        if labels.empty:
            raise InputError(f"{source}: nothing is labelled in the run yet (its labels.parquet); label galaxies "
                             "in `raregal explore` or give a table of labels with --labels")
    frame = check_labels(labels) if isinstance(labels, pd.DataFrame) else read_labels(labels)
    return pick_class(frame, class_name)


def guide(source, labels=None, batch: int = 10, *, class_name: str | None = None, learner: str = "hybrid",
          acquisition: str = "greedy", seed: int | None = 0, reps=None, features: str | None = None) -> GuideResult:
    """The next ``batch`` galaxies to show a person who is looking for more of a class.

    Parameters
    ----------
    source : a run folder (``raregal search`` output; its representation table is used, every row),
        a representation table path, or a DataFrame with ``id_str`` and the representation.
    labels : a labels table (path or DataFrame: ``id_str``, ``label`` 1/0, optional ``class``), or
        None for the run's own ``labels.parquet`` (written by the explorer).
    batch : how many galaxies to show next.
    class_name : which class of the labels (needed when they hold several).
    learner, acquisition : see :class:`GuidedSearch`.
    seed : its ``random_state``.
    reps, features : the run's representation table when it moved; the representation column(s).

    The same labels and seed give the same order. Raises InputError before any compute for
    bad labels (see :mod:`raregal.guided.labels`) or parameters.
    """
    from raregal.similarity import describe_rows, load_source
    from raregal.inputs import sky

    batch = check_batch(batch)
    estimator = GuidedSearch(learner=learner, acquisition=acquisition, random_state=seed)
    estimator._check_params()
    frame, class_name = _labels(labels, source, class_name)
    index, clusters = load_source(source, reps, features)
    y_table = labels_vector(frame, index.ids)
    y = y_table[index.rows]
    lost = int((y_table >= 0).sum() - (y >= 0).sum())
    if lost:
        log.warning("guide: %d labelled galaxies have no finite representation and are left out", lost)
    if not (y == 1).any():
        raise InputError(f"all {int((y_table == 1).sum())} labelled members have no finite representation "
                         "(NaN/inf features); label a member whose embedding is sound", param="labels")
    estimator.fit(index.X, y)
    chosen = estimator.next_batch(batch)
    table_rows = index.rows[chosen]
    out = pd.DataFrame({ID: index.ids[table_rows], "rank": np.arange(1, len(chosen) + 1),
                        "score": estimator.scores_[chosen]})
    describe_rows(out, table_rows, sky.with_coordinates(index.table, "the representation table"), clusters)
    scores = pd.DataFrame({ID: index.ids[index.rows], "score": estimator.scores_, "label": y})
    if clusters is not None and "cluster" in clusters.columns:
        scores["cluster"] = clusters.set_index(clusters[ID].astype(str))["cluster"].reindex(scores[ID]).to_numpy()
    return GuideResult(next=out, scores=scores, estimator=estimator, class_name=class_name)
