"""umap-learn's layout optimiser vs raregal's deterministic one (``layout="deterministic"``), same graph.

On a seeded planted table (:func:`raregal.evaluation.planted.make_planted`, 128-d) the exact k-NN graph
(:func:`raregal.discovery.knn.exact_knn`, n_neighbors=50) and umap-learn's fuzzy graph, schedule and
PCA init (:func:`raregal.discovery.deterministic_umap.prepare_layout`) are built once per seed; then the 5-D layout
is optimised twice from the same start: by ``umap.layouts.optimize_layout_euclidean`` (as
umap-learn runs it with a seed: one thread, ``move_other=True``) and by
:func:`raregal.discovery.deterministic_umap.optimize_layout`. Each layout is scored by trustworthiness (scikit-learn,
on a fixed 2,000-row sample, 15 and 50 neighbours) and by planted recovery of HDBSCAN leaf
clusters (:func:`raregal.evaluation.recovery.score_clusters`). Seconds: k-NN (exact, and NN-descent for
reference) and both optimisers, in one process per thread count (NUMBA/OpenMP/BLAS threads set
alike); the deterministic layouts of every thread count are checked to be the same bits.

    python benchmarks/layout_quality.py [--n 12000] [--seeds 0 1 2] [--threads 1 2]

Writes ``benchmarks/results/layout_quality.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GROUPS = (0.005, 0.01, 0.015, 0.02)
THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _data(n: int):
    import numpy as np

    from raregal.evaluation.planted import make_planted

    table = make_planted(n=n, dim=128, group_fractions=GROUPS, seed=0)
    return table.filter(like="feat_").to_numpy(np.float32), table["true_class"].to_numpy().astype(str)


def _umap_learn(problem, seed: int):
    import numpy as np
    from umap.layouts import optimize_layout_euclidean

    emb = problem.init.copy()
    rng_state = np.random.RandomState(seed).randint(np.iinfo(np.int32).min, np.iinfo(np.int32).max, 3).astype(np.int64)
    return optimize_layout_euclidean(emb, emb, problem.head, problem.tail.astype(np.int32), problem.n_epochs,
                                     len(emb), problem.epochs_per_sample.astype(np.float64), problem.a, problem.b, rng_state,
                                     1.0, 1.0, 5, parallel=False, move_other=True)


def _score(X, y, emb, sample, min_samples: int) -> dict:
    from sklearn.manifold import trustworthiness

    from raregal.discovery.hdbscan_leaves import leaf_clusters
    from raregal.evaluation.recovery import score_clusters

    labels = leaf_clusters(emb, min_samples, 10).labels
    scores = score_clusters(y, labels)
    return {"trust15": trustworthiness(X[sample], emb[sample], n_neighbors=15),
            "trust50": trustworthiness(X[sample], emb[sample], n_neighbors=50),
            "n_recovered": scores["n_recovered"], "n_classes": scores["n_classes"],
            "mean_f1": sum(c["f1"] for c in scores["classes"].values()) / scores["n_classes"],
            "n_clusters": scores["n_clusters"]}


def worker(n: int, seeds: list[int], min_samples: int, out: str) -> None:
    """One thread count: time the k-NN graphs and both optimisers, score every layout."""
    import numpy as np

    from raregal.discovery import deterministic_umap as layout
    from raregal.discovery import knn

    _warm()
    X, y = _data(n)
    sample = np.random.default_rng(0).choice(n, 2000, replace=False)
    t = time.perf_counter()
    knn = knn.exact_knn(X, 50)
    res = {"knn_exact_s": time.perf_counter() - t}
    t = time.perf_counter()
    knn.knn_graph(X, 50, random_state=0)  # NN-descent (n > EXACT_KNN_BELOW), for its time only
    res["knn_nndescent_s"] = time.perf_counter() - t
    graph = layout.fuzzy_graph(X, knn, 50, 0)
    res["runs"] = []
    for seed in seeds:
        problem = layout.prepare_layout(X, graph, 5, init="pca", seed=seed)
        t = time.perf_counter()
        ul = _umap_learn(problem, seed)
        t_ul = time.perf_counter() - t
        t = time.perf_counter()
        det = layout.optimize_layout(problem.init, problem.indptr, problem.tail, problem.epochs_per_sample,
                                     problem.n_epochs, problem.a, problem.b, seed)
        t_det = time.perf_counter() - t
        res["runs"].append({"seed": seed, "n_epochs": problem.n_epochs, "umap_learn_s": t_ul, "deterministic_s": t_det,
                            "deterministic_sha1": hashlib.sha1(det.tobytes()).hexdigest(),
                            "umap_learn": _score(X, y, ul, sample, min_samples),
                            "deterministic": _score(X, y, det, sample, min_samples)})
    Path(out).write_text(json.dumps(res, indent=1, default=float))


def _warm() -> None:
    """Compile on a small table first (umap-learn's kernels are not cached on disk), so no timing counts it."""
    import numpy as np

    from raregal.discovery import deterministic_umap as layout
    from raregal.discovery import knn

    X, _ = _data(2000)
    knn = knn.exact_knn(X, 15)
    problem = layout.prepare_layout(X, layout.fuzzy_graph(X, knn, 15, 0), 5, init="pca", n_epochs=5)
    layout.optimize_layout(problem.init, problem.indptr, problem.tail, problem.epochs_per_sample, 5,
                           problem.a, problem.b, 0)
    _umap_learn(problem, 0)
    knn.knn_graph(np.vstack([X] * 5), 15)


def _table(results: dict) -> str:
    lines = ["| seed | optimiser | trust@15 | trust@50 | recovered | mean F1 | clusters | seconds (threads) |",
             "|---|---|---|---|---|---|---|---|"]
    threads = sorted(results, key=int)
    for i, run in enumerate(results[threads[0]]["runs"]):
        for name, key in (("umap-learn", "umap_learn"), ("deterministic", "deterministic")):
            s = run[key]
            secs = ", ".join(f"{results[t]['runs'][i][key + '_s']:.1f} ({t})" for t in threads)
            lines.append(f"| {run['seed']} | {name} | {s['trust15']:.4f} | {s['trust50']:.4f} | "
                         f"{s['n_recovered']}/{s['n_classes']} | {s['mean_f1']:.3f} | {s['n_clusters']} | {secs} |")
    knn = "; ".join(f"{t} thread(s): exact {results[t]['knn_exact_s']:.1f} s, NN-descent "
                    f"{results[t]['knn_nndescent_s']:.1f} s" for t in threads)
    return "\n".join(lines) + f"\n\nk-NN (n_neighbors=50): {knn}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=12000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--min-samples", type=int, default=50)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.n, args.seeds, args.min_samples, args.worker)
        return 0
    results = {}
    for t in args.threads:
        out = HERE / "results" / f"layout_quality.{t}.tmp"
        env = {**os.environ, **{v: str(t) for v in THREAD_VARS}}
        subprocess.run([sys.executable, __file__, "--n", str(args.n), "--min-samples", str(args.min_samples),
                        "--seeds", *map(str, args.seeds), "--worker", str(out)], env=env, check=True)
        results[str(t)] = json.loads(out.read_text())
        out.unlink()
    hashes = {t: [r["deterministic_sha1"] for r in res["runs"]] for t, res in results.items()}
    same = len({tuple(h) for h in hashes.values()}) == 1
    summary = {"n": args.n, "groups": GROUPS, "min_samples": args.min_samples, "load_average": os.getloadavg(),
               "deterministic_same_bits_across_threads": same, "by_threads": results}
    (HERE / "results" / "layout_quality.json").write_text(json.dumps(summary, indent=1, default=float))
    print(_table(results))
    print(f"\ndeterministic layouts bit-identical across threads {args.threads}: {same}; "
          f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
