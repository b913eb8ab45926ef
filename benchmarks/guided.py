"""The guided search against plain similarity, a logistic regression and Protege, with a simulated person.

The simulated person (issue #26): for each planted class of a survey, start from ``--start`` (3)
random members; each round the method shows ``batch`` unlabelled galaxies, the person says
member / not member (the planted truth), and the method learns from it. Recall = members shown /
(class size - start members), after 50 shown (5 rounds of 10) and 200 shown (10 rounds of 20);
mean over ``--draws`` start draws. Every galaxy of the table is a candidate (those the paper's
pre-filter removes too).

Baselines, re-implemented from their published descriptions:
* ``similar``: nearest distance to any labelled member (raregal similar's rule);
* ``logistic``: a logistic regression on the labelled galaxies only (members against the
  non-members shown so far; before any non-member is shown, nearest-member ranking);
* ``protege``: Astronomaly's Protege (Lochner & Bassett 2021, Walmsley et al.'s active-learning
  follow-up): a Gaussian-process regression (Matern + white-noise kernel, scikit-learn) on the
  person's scores (member = 5, not = 0, Protege's 0-5 scale), ranked by expected improvement
  with xi = 0.5.

Usage::

    python benchmarks/guided.py --reps demo_run/reps.parquet --out benchmarks/results/guided.json \
        [--methods raregal,similar,logistic,protege] [--draws 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from raregal.inputs.tables import feature_matrix, read_table  # noqa: E402
from raregal.guided.estimator import GuidedSearch  # noqa: E402
from raregal.guided.learner import nearest_member_scores  # noqa: E402

SETTINGS = {"50": (5, 10), "200": (10, 20)}  # shown -> (rounds, batch)


def top_unlabelled(scores: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    cand = np.flatnonzero(y == -1)
    order = np.lexsort((cand, -scores[cand]))
    return cand[order[:n]]


def similar_batch(X, y, n, seed):
    return top_unlabelled(nearest_member_scores(X, X[y == 1]), y, n)


def logistic_batch(X, y, n, seed):
    from sklearn.linear_model import LogisticRegression

    if not (y == 0).any():
        return similar_batch(X, y, n, seed)
    rows = np.flatnonzero(y >= 0)
    fit = LogisticRegression(C=1.0, max_iter=2000).fit(X[rows], y[rows])
    return top_unlabelled(fit.decision_function(X), y, n)


def protege_batch(X, y, n, seed, xi: float = 0.5):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import Matern, WhiteKernel

    rows = np.flatnonzero(y >= 0)
    gp = GaussianProcessRegressor(Matern() + WhiteKernel(), random_state=seed)
    gp.fit(X[rows], 5.0 * y[rows])
    mu, sigma = gp.predict(X, return_std=True)
    best = 5.0 * y[rows].max()
    z = (mu - best - xi) / np.maximum(sigma, 1e-9)
    ei = (mu - best - xi) * norm.cdf(z) + sigma * norm.pdf(z)
    return top_unlabelled(ei, y, n)


def raregal_batch(X, y, n, seed, **params):
    return GuidedSearch(random_state=seed, **params).fit(X, y).next_batch(n)


METHODS = {"raregal": raregal_batch, "similar": similar_batch, "logistic": logistic_batch,
           "protege": protege_batch}


def simulate(X, truth, cls, method, rounds, batch, start, seed, **params) -> float:
    """Recall (members shown / members not given at the start) after ``rounds`` of ``batch``."""
    rng = np.random.default_rng(seed)
    members = np.flatnonzero(truth == cls)
    y = np.full(len(X), -1, np.int8)
    y[rng.choice(members, size=start, replace=False)] = 1
    found = 0
    for r in range(rounds):
        shown = METHODS[method](X, y, batch, seed * 1000 + r, **params)
        assert len(shown) == batch and (y[shown] == -1).all()
        hit = truth[shown] == cls
        y[shown] = hit.astype(np.int8)
        found += int(hit.sum())
    return found / (len(members) - start)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", required=True, help="representation table with true_class (demo_run/reps.parquet)")
    ap.add_argument("--methods", default="raregal,similar,logistic,protege")
    ap.add_argument("--params", default="{}", help="JSON of GuidedSearch parameters for the raregal method")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--start", type=int, default=3)
    ap.add_argument("--out", help="JSON to write")
    args = ap.parse_args(argv)
    frame = read_table(args.reps)
    X = feature_matrix(frame)
    truth = frame["true_class"].astype(str).to_numpy()
    classes = sorted(c for c in np.unique(truth) if c != "none" and (truth == c).sum() < 0.1 * len(truth))
    params = json.loads(args.params)
    result = {"reps": args.reps, "n_galaxies": len(X), "draws": args.draws, "start": args.start,
              "params": params, "classes": classes, "recall": {}, "seconds": {}}
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        table = {}
        for shown, (rounds, batch) in SETTINGS.items():
            table[shown] = {c: float(np.mean([simulate(X, truth, c, method, rounds, batch, args.start, s,
                                                       **(params if method == "raregal" else {}))
                                              for s in range(args.draws)])) for c in classes}
            table[shown]["mean"] = float(np.mean([table[shown][c] for c in classes]))
        result["recall"][method] = table
        result["seconds"][method] = round(time.perf_counter() - t0, 1)
        print(f"{method:10s} " + "  ".join(f"{k}: {v['mean']:.2f}" for k, v in table.items())
              + f"  ({result['seconds'][method]} s)", flush=True)
    print(format_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def format_table(result: dict) -> str:
    lines = []
    for shown in SETTINGS:
        cols = result["classes"] + ["mean"]
        lines.append(f"\n{shown} shown | " + " | ".join(cols))
        for method, table in result["recall"].items():
            lines.append(f"{method} | " + " | ".join(f"{table[shown][c]:.2f}" for c in cols))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
