"""Artifact classes: clusters whose members the model itself calls artifacts.

The paper drops predicted artifacts (``artifact >= 0.3``) before searching, and notes that
searching with them kept (``raregal search --keep-artifacts``) finds classes of artifacts:
satellite trails, diffraction spikes, bad pixels. raregal labels such clusters so a person can
set them aside: a cluster is an **artifact class** when the mean predicted artifact fraction of
its members is at least the artifact cut, or when a majority of its members are at or above it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raregal.discovery.hdbscan_leaves import n_clusters

#: A cluster is an artifact class when at least this fraction of its members pass the cut.
MAJORITY = 0.5


def artifact_classes(artifact_fraction: np.ndarray, labels: np.ndarray, cut: float = 0.3,
                     majority: float = MAJORITY) -> pd.DataFrame:
    """Label each cluster as an artifact class or not.

    Parameters
    ----------
    artifact_fraction : (N,) predicted artifact vote fraction of each row, in [0, 1]; NaN
        (not predicted) counts as no evidence and is left out of the cluster's statistics.
    labels : (N,) int cluster of each row, -1 = none.
    cut : the artifact cut (the pre-filter's, 0.3 in the paper).
    majority : fraction of members at or above ``cut`` that also makes an artifact class.

    Returns
    -------
    DataFrame, one row per cluster 0..K-1: ``cluster``, ``mean_artifact_fraction``,
    ``fraction_artifacts`` (members with fraction >= cut / members with a value),
    ``artifact_class`` (bool).
    """
    labels = np.asarray(labels, dtype=np.int64)
    frac = np.asarray(artifact_fraction, dtype=float)
    if frac.shape != labels.shape:
        raise ValueError(f"artifact fractions {frac.shape} and labels {labels.shape} differ in shape")
    k = n_clusters(labels)
    use = (labels >= 0) & np.isfinite(frac)
    n = np.bincount(labels[use], minlength=k).astype(float)
    total = np.bincount(labels[use], weights=frac[use], minlength=k)
    above = np.bincount(labels[use], weights=(frac[use] >= cut).astype(float), minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, total / n, np.nan)
        share = np.where(n > 0, above / n, np.nan)
    flagged = (np.nan_to_num(mean, nan=-1.0) >= cut) | (np.nan_to_num(share, nan=-1.0) >= majority)
    return pd.DataFrame({"cluster": np.arange(k), "mean_artifact_fraction": mean,
                         "fraction_artifacts": share, "artifact_class": flagged})
