"""Checks on a search's clusters beyond the paper: stability, merge suggestions, artifact classes.

:func:`check_clusters` runs them on a fitted :class:`raregal.discovery.estimator.RareClassSearch`;
:meth:`ClusterChecks.annotate` returns the run's tables (:class:`raregal.runs.model.Run`) with
the results added, paired with the clusters by id:

* the per-galaxy table gets a ``stability`` column (its cluster's score; NaN for unclustered
  rows) when stability was computed;
* the per-cluster table gets ``stability`` and ``unstable`` (with ``--stability``), and
  ``artifact_class``/``mean_artifact_fraction`` (when the table has the predicted artifact
  fraction);
* the summary gets ``stability`` (repeats, seeds, seconds) and ``artifact_classes``; the merge
  suggestions (:attr:`ClusterChecks.merges`, see :mod:`raregal.discovery.checks.merge`) become the run's
  :attr:`~raregal.runs.model.Run.merges`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raregal.discovery.checks.artifact_classes import artifact_classes
from raregal.discovery.checks.merge import merge_suggestions
from raregal.runs.model import typed_info
from raregal.discovery.checks.stability import Stability, cluster_stability

log = logging.getLogger("raregal")


@dataclass
class ClusterChecks:
    """Results of :func:`check_clusters` for K clusters."""

    stability: Stability | None  # None unless stability repeats were asked for
    merges: pd.DataFrame  # see raregal.discovery.checks.merge.COLUMNS
    artifacts: pd.DataFrame | None  # see raregal.discovery.checks.artifact_classes.artifact_classes; None without the column

    def per_cluster(self) -> pd.DataFrame:
        """One row per cluster id with the checks that ran: ``stability`` (4 decimals) and ``unstable``,
        ``artifact_class`` and ``mean_artifact_fraction`` (6 decimals); only ``cluster`` when none ran."""
        out = pd.DataFrame({"cluster": pd.Series(dtype=np.int64)})
        if self.stability is not None:  # scores[k] is cluster k's (raregal.discovery.checks.stability)
            out = out.merge(pd.DataFrame({"cluster": np.arange(len(self.stability.scores), dtype=np.int64),
                                          "stability": [round(float(s), 4) for s in self.stability.scores],
                                          "unstable": np.asarray(self.stability.unstable, dtype=bool)}),
                            on="cluster", how="outer")
        if self.artifacts is not None:
            found = self.artifacts[["cluster", "artifact_class", "mean_artifact_fraction"]].astype(
                {"cluster": np.int64, "artifact_class": bool})
            found = found.assign(mean_artifact_fraction=[_rounded(v) for v in found["mean_artifact_fraction"]])
            out = out.merge(found, on="cluster", how="outer")
        return out

    def annotate(self, table: pd.DataFrame, info: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
        """The run's tables with the results added, and the summary's entries for them.

        ``table`` has one row per galaxy and ``info`` one per cluster, each with ``cluster``;
        results are paired with them by cluster id. Returns new ``(table, info, entries)``:
        ``table`` gains ``stability`` (float32, NaN off clusters) when stability ran; ``info``
        the columns of :meth:`per_cluster` (typed, :func:`raregal.runs.model.typed_info`);
        ``entries`` the summary's ``stability`` and ``artifact_classes``. Nothing is changed in place.
        """
        found = self.per_cluster()
        entries: dict = {}
        if self.stability is not None:
            scores = pd.Series(np.asarray(self.stability.scores, dtype=np.float32),
                               index=np.arange(len(self.stability.scores), dtype=np.int64))
            table = table.assign(stability=table["cluster"].map(scores).astype(np.float32))
            entries["stability"] = {
                "repeats": len(self.stability.seeds), "seeds": self.stability.seeds,
                "unstable_below": self.stability.unstable_below,
                "n_unstable": int(self.stability.unstable.sum()),
                "n_clusters_per_repeat": self.stability.n_clusters_per_repeat,
                "seconds_per_repeat": self.stability.seconds_per_repeat,
            }
        if self.artifacts is not None:
            flagged = self.artifacts["artifact_class"].astype(bool)
            entries["artifact_classes"] = [int(k) for k in self.artifacts.loc[flagged, "cluster"]]
        info = typed_info(info.drop(columns=[c for c in found.columns if c != "cluster"], errors="ignore")
                          .merge(found, on="cluster", how="left"))
        return table, info, entries


def _rounded(value) -> float:
    """A fraction as the summary keeps it: 6 decimals, NaN kept."""
    return round(float(value), 6) if np.isfinite(value) else np.nan


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
        :func:`raregal.discovery.prefilter.campaign_columns`: GZ DESI's, else the newest campaign the table has).
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
        log.info("%d pair(s) of clusters may be one class (summary.json: merge_suggestions)", len(merges))
    artifacts = None
    if frame is not None and artifact_column is None:
        from raregal.discovery.prefilter import campaign_columns

        artifact_column = campaign_columns(frame.columns)["artifact"]
    if frame is not None and artifact_column in frame.columns:
        frac = pd.to_numeric(frame[artifact_column], errors="coerce").to_numpy(dtype=float)
        frac = frac[kept] if kept is not None else frac
        artifacts = artifact_classes(frac, est.labels_, artifact_cut)
        if artifacts["artifact_class"].any():
            log.info("artifact classes (members the model calls artifacts): clusters %s",
                     ", ".join(map(str, artifacts.loc[artifacts["artifact_class"], "cluster"])))
    return ClusterChecks(stability=result, merges=merges, artifacts=artifacts)


def describe_checks(entry) -> str:
    """A cluster's checks in words, e.g. ``"stability 0.42 (unstable) · artifact class"``.

    ``entry`` is a mapping with optional ``stability``, ``unstable`` and ``artifact_class`` (a
    ``summary["clusters"]`` item or a row of the report's cluster table); "" when none apply.
    """
    parts = []
    score = entry.get("stability")
    if score is not None and np.isfinite(float(score)):
        parts.append(f"stability {float(score):.2f}" + (" (unstable)" if entry.get("unstable") else ""))
    if entry.get("artifact_class"):
        parts.append("artifact class")
    return " · ".join(parts)
