"""What sets a cluster apart, in Galaxy Zoo words: its mean predicted vote fractions vs. the sample's.

Fractions in the representation table are per question and conditional on the question being
asked (``bar_strong_fraction`` is "of those who were asked about a bar, the share saying strong").
A difference on a question that is rarely asked of the cluster's galaxies says little, so each
answer's difference is weighted by the cluster's mean chance of reaching that question (the
product of the fractions of the answers leading to it, :func:`raregal.schema.ancestors`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import schema


def reach_probability(frac: np.ndarray) -> np.ndarray:
    """Chance each question is asked of each galaxy, shape (N, 34) aligned with ``schema.FRACTIONS``.

    ``frac`` is (N, 34) conditional vote fractions in :data:`raregal.schema.FRACTIONS` order.
    """
    frac = np.asarray(frac, dtype=np.float64)
    index = {a: i for i, a in enumerate(schema.ANSWERS)}
    reach = np.ones_like(frac)
    for q in schema.TREE:
        p = np.ones(len(frac))
        for answer in schema.ancestors(q.name):
            p = p * frac[:, index[answer]]
        reach[:, q.slice] = p[:, None]
    return reach


def distinctive_answers(frac: np.ndarray, members: np.ndarray, top: int = 3,
                        min_difference: float = 0.05) -> list[dict]:
    """The answers on which the ``members`` rows of ``frac`` differ most from all rows.

    Parameters
    ----------
    frac : (N, 34) vote fractions of the whole kept sample, :data:`raregal.schema.FRACTIONS` order.
    members : boolean mask (N,) or integer indices of the cluster's rows.
    top : at most this many answers are returned.
    min_difference : answers whose weighted raise is below this are left out.

    Returns
    -------
    list of ``{"answer", "question", "cluster", "sample", "score"}`` dicts, best first, for answers
    that are *more* common in the cluster (``cluster`` and ``sample`` are mean fractions in 0..1).
    """
    frac = np.nan_to_num(np.asarray(frac, dtype=np.float64), nan=0.0)
    if len(frac) == 0:
        return []
    mask = np.zeros(len(frac), bool)
    mask[members] = True
    if not mask.any():
        return []
    mean_c, mean_all = frac[mask].mean(0), frac.mean(0)
    reach_c = reach_probability(frac[mask]).mean(0)
    score = (mean_c - mean_all) * reach_c
    out = []
    for i in np.argsort(-score, kind="stable")[:top]:
        if score[i] < min_difference:
            break
        q = next(q for q in schema.TREE if q.start <= i < q.stop)
        out.append({"answer": schema.ANSWERS[i], "question": q.name, "cluster": float(mean_c[i]),
                    "sample": float(mean_all[i]), "score": float(score[i])})
    return out


def describe(answers: list[dict]) -> str:
    """One line of words: ``"bar_strong 0.81 vs 0.12; merging_merger 0.55 vs 0.10"``."""
    if not answers:
        return "no predicted answer sets it apart from the whole sample"
    return "; ".join(f"{a['answer']} {a['cluster']:.2f} vs {a['sample']:.2f}" for a in answers)


def aligned(table: pd.DataFrame, fractions: pd.DataFrame) -> pd.DataFrame:
    """``fractions`` (by ``id_str``) in the row order of ``table``; rows it lacks are NaN.

    The report and the explorer both line the run's input table up with its kept galaxies so.
    """
    return table[["id_str"]].merge(fractions.drop_duplicates("id_str"), on="id_str", how="left")


def cluster_morphology(fractions: pd.DataFrame, labels: np.ndarray, clusters, top: int = 3) -> dict:
    """``{cluster: distinctive_answers(...)}`` for each cluster id in ``clusters``.

    ``fractions`` holds the 34 ``schema.FRACTIONS`` columns for the kept rows and ``labels`` (N,)
    their cluster ids (-1 = none).
    """
    frac = fractions[schema.FRACTIONS].to_numpy(dtype=np.float64)
    labels = np.asarray(labels)
    return {int(k): distinctive_answers(frac, labels == k, top=top) for k in clusters}
