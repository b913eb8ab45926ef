"""What sets a cluster apart, in Galaxy Zoo words: its mean predicted vote fractions vs. the sample's.

Fractions in the representation table are per question and conditional on the question being
asked (``bar_strong_fraction`` is "of those who were asked about a bar, the share saying strong").
A difference on a question that is rarely asked of the cluster's galaxies says little, so each
answer's difference is weighted by the cluster's mean chance of reaching that question (the
product of the fractions of the answers leading to it, :func:`raregal.inputs.gz_trees.ancestors`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raregal.inputs import gz_trees as schema


def reach_probability(frac: np.ndarray, tree: schema.Schema = schema.DEFAULT) -> np.ndarray:
    """Chance each question is asked of each galaxy, shape (N, A) aligned with ``tree.fractions``.

    ``frac`` is (N, A) conditional vote fractions in ``tree.fractions`` order (GZ DESI: A = 34).
    """
    frac = np.asarray(frac, dtype=np.float64)
    index = {a: i for i, a in enumerate(tree.answers)}
    reach = np.ones_like(frac)
    for q in tree.tree:
        p = np.ones(len(frac))
        for answer in tree.ancestors(q.name):
            p = p * frac[:, index[answer]]
        reach[:, q.slice] = p[:, None]
    return reach


def distinctive_answers(frac: np.ndarray, members: np.ndarray, top: int = 3,
                        min_difference: float = 0.05, tree: schema.Schema = schema.DEFAULT) -> list[dict]:
    """The answers on which the ``members`` rows of ``frac`` differ most from all rows.

    Parameters
    ----------
    frac : (N, A) vote fractions of the whole kept sample, in ``tree.fractions`` order.
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
    reach_c = reach_probability(frac[mask], tree).mean(0)
    score = (mean_c - mean_all) * reach_c
    out = []
    for i in np.argsort(-score, kind="stable")[:top]:
        if score[i] < min_difference:
            break
        q = next(q for q in tree.tree if q.start <= i < q.stop)
        out.append({"answer": tree.answers[i], "question": q.name, "cluster": float(mean_c[i]),
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


def cluster_morphology(fractions: pd.DataFrame, labels: np.ndarray, clusters, top: int = 3,
                       tree: schema.Schema | None = None) -> dict:
    """``{cluster: distinctive_answers(...)}`` for each cluster id in ``clusters``.

    ``fractions`` holds the ``tree.fractions`` columns for the kept rows (``tree`` None: the schema
    they belong to, :func:`raregal.inputs.gz_trees.infer_fractions`, else GZ DESI's) and ``labels`` (N,)
    their cluster ids (-1 = none).
    """
    tree = tree or schema.infer_fractions(fractions.columns) or schema.DEFAULT
    frac = fractions[tree.fractions].to_numpy(dtype=np.float64)
    labels = np.asarray(labels)
    return {int(k): distinctive_answers(frac, labels == k, top=top, tree=tree) for k in clusters}


def run_fractions(run) -> pd.DataFrame | None:
    """``id_str`` + the predicted fraction columns of the run's input table, of the schema they belong to.

    The schema is inferred from the input's column names (GZ DESI's when they are not known without
    reading, or fit no schema); None when the table is gone or lacks any of that schema's fractions.
    """
    from raregal.runs.with_images import input_columns, read_input

    names = input_columns(run)
    tree = (schema.infer_fractions(names) if names else None) or schema.DEFAULT
    frac = read_input(run, tree.fractions)
    if frac is None or not all(c in frac.columns for c in tree.fractions):
        return None
    return frac
