"""Checks on a search's clusters beyond the paper: stability, merge suggestions, artifact classes.

:func:`check_clusters` runs them on a fitted :class:`raregal.search.RareClassSearch`;
:meth:`ClusterChecks.annotate` adds the results to the run's tables:

* ``clusters.parquet`` gets a ``stability`` column (its cluster's score; NaN for unclustered
  rows) when stability was computed;
* each entry of ``summary["clusters"]`` gets ``stability`` and ``unstable`` (with
  ``--stability``), and ``artifact_class``/``mean_artifact_fraction`` (when the table has the
  predicted artifact fraction);
* ``summary["stability"]`` (repeats, seeds, seconds), ``summary["merge_suggestions"]`` (one
  record per proposed pair, see :mod:`raregal.merge`) and ``summary["artifact_classes"]``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .artifacts import artifact_classes
from .merge import merge_suggestions
from .stability import Stability, cluster_stability

log = logging.getLogger("raregal")


@dataclass
class ClusterChecks:
    """Results of :func:`check_clusters` for K clusters."""

    stability: Stability | None  # None unless stability repeats were asked for
    merges: pd.DataFrame  # see raregal.merge.COLUMNS
    artifacts: pd.DataFrame | None  # see raregal.artifacts.artifact_classes; None without the column

    def annotate(self, table: pd.DataFrame, summary: dict) -> None:
        """Add the results to a run's cluster table (in place) and summary dict (in place)."""
        per_cluster = summary.get("clusters", [])
        if self.stability is not None:
            scores = self.stability.scores
            labels = table["cluster"].to_numpy()
            table["stability"] = np.where(labels >= 0, scores[np.maximum(labels, 0)] if len(scores) else np.nan,
                                          np.nan).astype(np.float32)
            for entry in per_cluster:
                k = entry["cluster"]
                entry["stability"] = round(float(scores[k]), 4)
                entry["unstable"] = bool(self.stability.unstable[k])
            summary["stability"] = {
                "repeats": len(self.stability.seeds), "seeds": self.stability.seeds,
                "unstable_below": self.stability.unstable_below,
                "n_unstable": int(self.stability.unstable.sum()),
                "n_clusters_per_repeat": self.stability.n_clusters_per_repeat,
                "seconds_per_repeat": self.stability.seconds_per_repeat,
            }
        if self.artifacts is not None:
            for entry, (_, row) in zip(per_cluster, self.artifacts.iterrows()):
                entry["artifact_class"] = bool(row["artifact_class"])
                entry["mean_artifact_fraction"] = _finite(row["mean_artifact_fraction"])
            summary["artifact_classes"] = [int(k) for k in self.artifacts.loc[self.artifacts["artifact_class"],
                                                                                "cluster"]]
        summary["merge_suggestions"] = [{k: _finite(v) for k, v in rec.items()}
                                        for rec in self.merges.to_dict(orient="records")]


def _finite(value):
    """JSON-friendly scalar: numpy types to Python, NaN to None."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return round(float(value), 6) if np.isfinite(value) else None
    return value


def check_clusters(est, X: np.ndarray, frame: pd.DataFrame | None = None, kept: np.ndarray | None = None, *,
                   stability: int = 0, unstable_below: float = 0.6, artifact_cut: float = 0.3,
                   merge_max_tree_distance: int = 2, merge_max_centroid_ratio: float = 0.25,
                   timer=None, progress: bool = True, artifact_column: str | None = None) -> ClusterChecks:
    """Stability (when ``stability`` > 0 repeats), merge suggestions and artifact classes.

    Parameters
    ----------
    est : fitted RareClassSearch; X : (N, D) the array it was fitted on.
    frame, kept : the input table and the (len(frame),) mask of its rows in X, for the
        predicted artifact fraction (skipped when absent).
    artifact_column : the fraction column read (None: that of the pre-filter's default campaign,
        :func:`raregal.select.campaign_columns`: GZ DESI's, else the newest campaign the table has).
    """
    from contextlib import nullcontext

    stage = timer.stage if timer is not None else (lambda name: nullcontext())
    result = None
    if stability > 0:
        with stage("stability"):
            result = cluster_stability(est, X, stability, unstable_below, progress=progress)
        log.info("stability over %d seeds: %d of %d clusters unstable (mean best Jaccard < %.2f); %.1f s per repeat",
                 stability, int(result.unstable.sum()), len(result.scores), unstable_below,
                 float(np.mean(result.seconds_per_repeat)))
    with stage("merge"):
        merges = merge_suggestions(X, est.labels_, est.condensed_tree_, est.cluster_tree_nodes_,
                                   max_tree_distance=merge_max_tree_distance,
                                   max_centroid_ratio=merge_max_centroid_ratio)
    if len(merges):
        log.info("%d pair(s) of clusters may be one class (merge_suggestions.csv)", len(merges))
    artifacts = None
    if frame is not None and artifact_column is None:
        from .select import campaign_columns

        artifact_column = campaign_columns(frame.columns)["artifact"]
    if frame is not None and artifact_column in frame.columns:
        frac = pd.to_numeric(frame[artifact_column], errors="coerce").to_numpy(dtype=float)
        frac = frac[kept] if kept is not None else frac
        artifacts = artifact_classes(frac, est.labels_, artifact_cut)
        if artifacts["artifact_class"].any():
            log.info("artifact classes (members the model calls artifacts): clusters %s",
                     ", ".join(map(str, artifacts.loc[artifacts["artifact_class"], "cluster"])))
    return ClusterChecks(stability=result, merges=merges, artifacts=artifacts)


def _is_true(value) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and bool(value)


def describe_checks(entry) -> str:
    """A cluster's checks in words, e.g. ``"stability 0.42 (unstable) · artifact class"``.

    ``entry`` is a mapping with optional ``stability``, ``unstable`` and ``artifact_class`` (a
    ``summary["clusters"]`` item or a row of the report's cluster table); "" when none apply.
    """
    parts = []
    score = entry.get("stability")
    if score is not None and np.isfinite(float(score)):
        parts.append(f"stability {float(score):.2f}" + (" (unstable)" if _is_true(entry.get("unstable")) else ""))
    if _is_true(entry.get("artifact_class")):
        parts.append("artifact class")
    return " · ".join(parts)
