"""Scoring a search against planted truth: which rare classes did the clusters recover?

Given each galaxy's true class (``bulk`` or a rare class's name, as in the synthetic survey's
``true_class`` column) and the cluster the search put it in (``-1``: none), each rare class is
matched to its **best-matching cluster**: the cluster with the highest F1 score (Dice
coefficient) with the class, ``F1 = 2 |C ∩ K| / (|C| + |K|)``, which balances finding most of
the class (recall ``|C ∩ K| / |C|``) against the cluster being mostly that class (purity
``|C ∩ K| / |K|``). Ties go to the purer cluster, then the lower cluster id. A class is
**recovered** when its best cluster has recall >= ``min_recall`` and purity >= ``min_purity``
(0.5 and 0.8 by default). With purity above one half, a cluster can recover at most one class.

Rows the pre-filter dropped are simply unclustered (``-1``) here: a rare class the pre-filter
removes counts as missed, as it would be for an astronomer.
"""

from __future__ import annotations

import math

import numpy as np

from raregal.errors import InputError


def _validate(true_class, labels) -> tuple[np.ndarray, np.ndarray]:
    true_class = np.asarray(true_class)
    labels = np.asarray(labels)
    if true_class.ndim != 1 or labels.ndim != 1:
        raise InputError(f"true_class and labels must be 1-D, got shapes {true_class.shape} and {labels.shape}")
    if len(true_class) != len(labels):
        raise InputError(f"true_class has {len(true_class)} rows but labels has {len(labels)}")
    if labels.dtype.kind == "f":
        if np.isnan(labels).any():
            raise InputError("labels contain NaN; use -1 for unclustered rows")
        if not np.all(labels == np.round(labels)):
            raise InputError("labels must be integer cluster ids (-1 = unclustered)")
    elif labels.dtype.kind not in "iub":
        raise InputError(f"labels must be integer cluster ids, got dtype {labels.dtype}")
    if true_class.dtype == object and any(v is None or (isinstance(v, float) and math.isnan(v)) for v in true_class):
        raise InputError("true_class has missing values")
    return true_class.astype(str), labels.astype(np.int64)


def score_clusters(true_class, labels, bulk: str = "bulk", min_recall: float = 0.5,
                   min_purity: float = 0.8) -> dict:
    """Score clusters against planted classes.

    Parameters
    ----------
    true_class : array (n,) of str
        Each row's true class; ``bulk`` marks ordinary galaxies.
    labels : array (n,) of int
        Each row's cluster id, ``-1`` for rows in no cluster (or dropped before clustering).
    bulk : str
        The name of the ordinary class (not scored as a class).
    min_recall, min_purity : float
        A class counts as recovered when its best-matching cluster reaches both.

    Returns
    -------
    dict (JSON-serialisable)
        ``classes``: ``{name: {"n_true", "best_cluster" (int or None), "recall", "purity", "f1",
        "recovered"}}`` for every non-bulk class, sorted by name; ``n_recovered``; ``n_classes``;
        ``bulk_fraction_clustered`` (fraction of bulk rows in any cluster, None without bulk
        rows); ``n_rows``; ``n_clusters``; ``min_recall``; ``min_purity``; ``matching``.
    """
    from sklearn.metrics.cluster import contingency_matrix

    true_class, labels = _validate(true_class, labels)
    clustered = labels >= 0
    cluster_ids, cluster_sizes = np.unique(labels[clustered], return_counts=True)
    class_names = sorted(set(np.unique(true_class)) - {bulk})

    scores: dict[str, dict] = {}
    if clustered.any():
        classes_c, class_idx = np.unique(true_class[clustered], return_inverse=True)
        _, cluster_idx = np.unique(labels[clustered], return_inverse=True)
        table = contingency_matrix(class_idx, cluster_idx, sparse=True).tocsr()  # (class, cluster) counts
        row_of = {c: i for i, c in enumerate(classes_c)}
    for name in class_names:
        n_true = int(np.sum(true_class == name))
        entry = {"n_true": n_true, "best_cluster": None, "recall": 0.0, "purity": 0.0, "f1": 0.0,
                 "recovered": False}
        if clustered.any() and name in row_of:
            row = table.getrow(row_of[name])
            cols, hits = row.indices, row.data.astype(float)
            if len(cols):
                sizes = cluster_sizes[cols].astype(float)
                f1 = 2.0 * hits / (n_true + sizes)
                purity = hits / sizes
                # best F1, then purer, then lower cluster id
                order = np.lexsort((cluster_ids[cols], -purity, -f1))
                best = order[0]
                entry.update(best_cluster=int(cluster_ids[cols[best]]), recall=float(hits[best] / n_true),
                             purity=float(purity[best]), f1=float(f1[best]))
        entry["recovered"] = bool(entry["recall"] >= min_recall and entry["purity"] >= min_purity)
        scores[name] = entry

    is_bulk = true_class == bulk
    return {
        "classes": scores,
        "n_recovered": int(sum(e["recovered"] for e in scores.values())),
        "n_classes": len(scores),
        "bulk_fraction_clustered": float(clustered[is_bulk].mean()) if is_bulk.any() else None,
        "n_rows": int(len(labels)),
        "n_clusters": int(len(cluster_ids)),
        "min_recall": float(min_recall),
        "min_purity": float(min_purity),
        "matching": "best F1 (Dice) cluster per class",
    }


def format_scores(scores: dict) -> str:
    """A plain-text table of :func:`score_clusters`' result, one line per class, for printing."""
    rows = [("class", "n_true", "cluster", "recall", "purity", "recovered")]
    for name, e in scores.get("classes", {}).items():
        cluster = "-" if e["best_cluster"] is None else str(e["best_cluster"])
        rows.append((name, str(e["n_true"]), cluster, f"{e['recall']:.2f}", f"{e['purity']:.2f}",
                     "yes" if e["recovered"] else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    bulk = scores.get("bulk_fraction_clustered")
    bulk_txt = "no bulk galaxies" if bulk is None else f"{100 * bulk:.1f}% of bulk galaxies fell into clusters"
    lines.append(f"recovered {scores.get('n_recovered', 0)} of {scores.get('n_classes', 0)} classes "
                 f"(recall >= {scores.get('min_recall', 0.5):g}, purity >= {scores.get('min_purity', 0.8):g}); "
                 f"{bulk_txt}")
    return "\n".join(lines)
