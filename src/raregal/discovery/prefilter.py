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

from raregal.inputs import gz_trees
from raregal.errors import InputError
from raregal.inputs.gz_trees import ARTIFACT_FRACTION, EDGE_ON_FRACTION, SMOOTH_FRACTION

log = logging.getLogger("raregal")


#: Answers of the ``merging`` question that say a galaxy is disturbed (the rest: ``merging_none``).
DISTURBED_FRACTIONS = ("merging_minor-disturbance_fraction", "merging_major-disturbance_fraction",
                       "merging_merger_fraction")


@dataclass(frozen=True)
class Cut:
    """One cut: drop rows whose ``column`` is ``>= threshold``.

    ``rescue``: rows whose ``rescue_columns`` sum to ``>= rescue`` are kept all the same (None: off).
    """

    name: str
    column: str
    threshold: float
    rescue: float | None = None
    rescue_columns: tuple[str, ...] = ()


#: Campaigns oldest first (GZ2, SDSS, came before the DECaLS campaigns).
_BY_AGE = ("gz2",) + tuple(c for c in gz_trees.CAMPAIGNS if c != "gz2")


def table_campaigns(columns) -> list[str]:
    """Campaigns (oldest first) whose ``smooth-or-featured-<c>_smooth_fraction`` column is in ``columns``."""
    have = set(map(str, columns))
    return [c for c in _BY_AGE if f"smooth-or-featured-{c}_smooth_fraction" in have]


def campaign_columns(columns, campaign: str | None = None) -> dict[str, str | tuple[str, ...]]:
    """The fraction columns the pre-filter reads from a table with ``columns``, for ``campaign``.

    ``campaign`` None: GZ DESI's columns (``smooth-or-featured_smooth_fraction``) when the table has
    them or names no campaign, else the newest campaign present. Returns ``{"smooth", "edge_on",
    "artifact": column, "disturbed": (columns,)}``. A ``campaign`` the table lacks (or that raregal
    does not know) is an InputError(param="campaign") naming the table's campaigns.
    """
    present = table_campaigns(columns)
    if campaign is None and (SMOOTH_FRACTION in set(map(str, columns)) or not present):
        return {"smooth": SMOOTH_FRACTION, "edge_on": EDGE_ON_FRACTION, "artifact": ARTIFACT_FRACTION,
                "disturbed": DISTURBED_FRACTIONS}
    if campaign is not None and campaign not in present:
        has = ", ".join(present) if present else "none (its fraction columns carry no -dr5/-dr8 etc.)"
        raise InputError(f"campaign={campaign!r}: the table has no smooth-or-featured-{campaign}_smooth_fraction "
                         f"column; the campaigns it has: {has}", param="campaign")
    campaign = campaign or present[-1]
    tree = next(s for s in gz_trees.SCHEMAS.values() if campaign in s.campaigns)
    merging = next((q.answers for q in tree.tree if q.name == f"merging-{campaign}"), ())
    disturbed = tuple(f"{a}_fraction" for a in merging if not a.endswith(("_none", "_neither")))
    return {**tree.prefilter_columns(campaign), "disturbed": disturbed}


def paper_cuts(smooth_cut: float = 0.5, edge_on_cut: float = 0.3, artifact_cut: float = 0.3,
               keep_artifacts: bool = False, keep_disturbed: float | None = None,
               columns: dict | None = None) -> list[Cut]:
    """The paper's three cuts (the artifact cut left out when ``keep_artifacts``).

    ``keep_disturbed`` (beyond the paper, off by default): the smooth cut keeps galaxies whose
    predicted minor + major disturbance + merger fractions reach it, so shells, streams and tidal
    features around ellipticals are searched too. ``columns``: the fraction columns to read, as
    :func:`campaign_columns` gives them (None: GZ DESI's).
    """
    cols = columns or campaign_columns(())
    cuts = [Cut("smooth", cols["smooth"], smooth_cut, keep_disturbed, tuple(cols["disturbed"]) if keep_disturbed
                is not None else ()), Cut("edge_on", cols["edge_on"], edge_on_cut)]
    if not keep_artifacts:
        cuts.append(Cut("artifact", cols["artifact"], artifact_cut))
    return cuts


#: How far a vote fraction may stray outside [0, 1] (float32 rounding of a softmax or of votes / total).
FRACTION_SLACK = 1e-4


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The vote fractions of ``column`` as floats (NaN: the question was not asked); InputError naming
    the column and example ids when any lies outside [0, 1], which would change the cuts silently."""
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    bad = (values < -FRACTION_SLACK) | (values > 1 + FRACTION_SLACK) | np.isinf(values)
    if bad.any():
        ids = frame["id_str"].to_numpy()[bad][:5] if "id_str" in frame.columns else np.flatnonzero(bad)[:5]
        shown = ", ".join(f"{i}={v:g}" for i, v in zip(ids, values[bad][:5]))
        raise InputError(f"column {column!r}: {int(bad.sum())} vote fraction(s) outside [0, 1], e.g. {shown}; "
                         "fractions are votes for an answer / votes for its question (NaN: not asked)")
    return values


def _rescued(frame: pd.DataFrame, cut: Cut) -> np.ndarray | None:
    """Rows the cut's rescue rule keeps, or None when the rule is off or its columns are missing."""
    if cut.rescue is None:
        return None
    missing = [c for c in cut.rescue_columns if c not in frame.columns]
    if missing:
        log.warning("pre-filter: no column(s) %s, so nothing is rescued from the %s cut", ", ".join(missing),
                    cut.name)
        return None
    total = np.nansum(np.column_stack([_numeric(frame, c) for c in cut.rescue_columns]), axis=1)
    return total >= cut.rescue


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
        reports the same count as before it, and ``skipped_<cut>: 1``; a cut with a rescue rule
        reports ``rescued_<cut>``, the rows it would have dropped but kept).
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
            values = _numeric(frame, cut.column)
            if len(values) and np.isnan(values).all():
                all_nan.append(cut.name)
            drop = values >= cut.threshold  # NaN >= t is False: "not asked" removes nothing
            rescued = _rescued(frame, cut)
            if rescued is not None:
                counts[f"rescued_{cut.name}"] = int((kept & drop & rescued).sum())
                drop &= ~rescued
            kept &= ~drop
        counts[f"after_{cut.name}"] = int(kept.sum())
    counts["kept"] = int(kept.sum())
    if all_nan:
        log.warning("pre-filter: every value of %s is NaN (an encoder without a Dirichlet head predicts no vote "
                    "fractions), so %s removed nothing", ", ".join(c.column for c in cuts if c.name in all_nan),
                    "the pre-filter" if len(all_nan) == len(cuts) else "the " + ", ".join(all_nan) + " cut(s)")
    return kept, counts
