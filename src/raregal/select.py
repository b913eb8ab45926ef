"""The pre-filter: drop galaxies the model itself calls smooth, edge-on or an artifact.

The paper removes, in this order, galaxies with predicted ``smooth >= 0.5``, ``edge-on disk
>= 0.3`` and ``artifact >= 0.3`` before searching, so the search spends its resolution on
featured galaxies. Fractions are Zoobot's per-question vote fractions (conditional on the
question being asked); a NaN fraction means "not asked" and removes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .schema import ARTIFACT_FRACTION, EDGE_ON_FRACTION, SMOOTH_FRACTION

log = logging.getLogger("raregal")


@dataclass(frozen=True)
class Cut:
    """One cut: drop rows whose ``column`` is ``>= threshold``."""

    name: str
    column: str
    threshold: float


def paper_cuts(smooth_cut: float = 0.5, edge_on_cut: float = 0.3, artifact_cut: float = 0.3,
               keep_artifacts: bool = False) -> list[Cut]:
    """The paper's three cuts (the artifact cut left out when ``keep_artifacts``)."""
    cuts = [Cut("smooth", SMOOTH_FRACTION, smooth_cut), Cut("edge_on", EDGE_ON_FRACTION, edge_on_cut)]
    if not keep_artifacts:
        cuts.append(Cut("artifact", ARTIFACT_FRACTION, artifact_cut))
    return cuts


def prefilter(frame: pd.DataFrame, cuts: list[Cut], keep: np.ndarray | None = None
              ) -> tuple[np.ndarray, dict[str, int]]:
    """Apply ``cuts`` in order.

    Parameters
    ----------
    frame : table with the fraction columns named by the cuts (missing columns skip that cut,
        with a warning).
    keep : optional boolean mask of rows eligible to start with (e.g. valid representations).

    Returns
    -------
    kept : boolean array of shape (len(frame),), True for rows that pass every cut.
    counts : ``{"input": N, "after_<cut>": n, …}`` — rows left after each cut (a skipped cut
        reports the same count as before it, and ``skipped_<cut>: 1``).
    """
    kept = np.ones(len(frame), bool) if keep is None else np.asarray(keep, bool).copy()
    counts = {"input": int(len(frame))}
    if keep is not None:
        counts["valid"] = int(kept.sum())
    all_nan = []
    for cut in cuts:
        if cut.column not in frame.columns:
            log.warning("pre-filter: no column %r, so the %s cut is skipped", cut.column, cut.name)
            counts[f"skipped_{cut.name}"] = 1
        else:
            values = pd.to_numeric(frame[cut.column], errors="coerce").to_numpy(dtype=float)
            if len(values) and np.isnan(values).all():
                all_nan.append(cut.name)
            kept &= ~(values >= cut.threshold)  # NaN >= t is False: "not asked" removes nothing
        counts[f"after_{cut.name}"] = int(kept.sum())
    counts["kept"] = int(kept.sum())
    if all_nan:
        log.warning("pre-filter: every value of %s is NaN (an encoder without a Dirichlet head predicts no vote "
                    "fractions), so %s removed nothing", ", ".join(c.column for c in cuts if c.name in all_nan),
                    "the pre-filter" if len(all_nan) == len(cuts) else "the " + ", ".join(all_nan) + " cut(s)")
    return kept, counts
