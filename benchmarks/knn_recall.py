"""Seconds and recall@50 of the search's k-NN graphs: exact, NN-descent (the default) and partitioned.

On seeded planted tables of 128-d rows (``raregal.evaluation.planted.make_planted``, as
``search_scaling.py``), n_neighbors=50, all threads of this machine:

* ``exact``: :func:`raregal.discovery.knn.exact_knn` (thread-independent, N^2 D), timed where N <= 100k;
* ``nndescent``: umap-learn's NN-descent as the default search runs it (thread-dependent);
* ``partitioned``: :func:`raregal.discovery.knn.partitioned_knn` (``layout="deterministic"``).

Recall: the fraction of each row's 50 exact neighbours the graph lists, over 2,000 seeded rows
(their exact neighbours computed directly). Results: ``benchmarks/results/knn_recall.json``.

    python benchmarks/knn_recall.py [--sizes 20000 100000 632000] [--probes 16 32]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def recall(graph: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each truth row's neighbours that the graph row lists."""
    return float(np.mean([len(np.intersect1d(g, t)) / truth.shape[1] for g, t in zip(graph, truth)]))


def measure(n: int, probes, k: int = 50, seed: int = 0) -> list[dict]:

    from raregal.discovery import knn
    from raregal.evaluation.planted import make_planted
    from raregal.discovery.distances import metric_space
    from raregal.discovery.knn import partitioned_knn

    X = make_planted(n=n, dim=128, seed=seed).filter(like="feat_").to_numpy(np.float32)
    P = metric_space(X, "euclidean")
    rows = np.sort(np.random.default_rng(1).choice(n, min(n, 2000), replace=False))
    truth = knn.exact_knn_of(P, np.einsum("ij,ij->i", P, P), rows, k)[0]
    runs = [("nndescent", None, lambda: knn.knn_graph(X, k, random_state=seed))]
    runs += [("partitioned", p, lambda p=p: partitioned_knn(X, k, n_probe=p, random_state=seed)) for p in probes]
    if n <= 100_000:
        runs.append(("exact", None, lambda: knn.exact_knn(X, k)))
    out = []
    for name, n_probe, fn in runs:
        t0 = time.perf_counter()
        idx = fn()[0]
        row = {"n": n, "method": name, "n_probe": n_probe, "seconds": round(time.perf_counter() - t0, 1),
               "recall_at_50": round(recall(idx[rows], truth), 4)}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def main(argv=None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000, 632_000])
    parser.add_argument("--probes", type=int, nargs="+", default=[16, 32])
    args = parser.parse_args(argv)
    from raregal.discovery.knn import partitioned_knn

    partitioned_knn(np.random.default_rng(0).normal(size=(3000, 8)).astype(np.float32), 10)  # compile, uncounted
    rows = [r for n in args.sizes for r in measure(n, args.probes)]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "knn_recall.json"
    out.write_text(json.dumps({"cores": len(os.sched_getaffinity(0)), "date": time.strftime("%Y-%m-%d"),
                               "rows": rows}, indent=2))
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
