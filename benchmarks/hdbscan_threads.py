"""HDBSCAN's seconds at 1 and 2 (or more) threads, and whether the labels stay the same.

raregal's fast_hdbscan path (:func:`raregal.discovery.hdbscan_leaves.leaf_clusters`) builds the minimum spanning
tree with fast_hdbscan's parallel Boruvka and rewrites it canonically
(:mod:`raregal.discovery.canonical_tree`), so the labels must not depend on the threads. This times it, each
thread count in a fresh process (numba's cache warmed first), on a seeded 5-D table shaped like the
search's 5-D map: a bulk (standard normal), tight planted groups (0.1-1 %), coordinates rounded to
float32 as the layout writes them; the paper's min_samples=300, min_cluster_size=10, leaf.

    python benchmarks/hdbscan_threads.py [--n 632000] [--threads 1 2] [--out benchmarks/results/hdbscan_threads.json]

Prints per thread count the seconds, clusters and a hash of the labels; the parallel fraction p
follows from Amdahl's law, t(T) = t(1) * ((1 - p) + p / T).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = """
import hashlib, json, sys, time
import numpy as np
from raregal.discovery.hdbscan_leaves import leaf_clusters

n, seed = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(seed)
sizes = [max(5, int(f * n)) for f in (0.001, 0.002, 0.005, 0.01)]
parts = [rng.normal(0, 1, (n - sum(sizes), 5))]
parts += [rng.normal(rng.uniform(-2, 2, 5), 0.05, (s, 5)) for s in sizes]
Y = np.concatenate(parts).astype(np.float32)
leaf_clusters(Y[:2000], 30, 10)  # compiled kernels loaded (or compiled) outside the timing
t0 = time.perf_counter()
fit = leaf_clusters(Y, 300, 10)
seconds = time.perf_counter() - t0
digest = hashlib.sha256(fit.labels.tobytes() + fit.probabilities.tobytes()).hexdigest()[:16]
print(json.dumps({"seconds": round(seconds, 2), "n_clusters": int(fit.n_clusters), "labels_sha256": digest,
                  "noise_fraction": round(float((fit.labels < 0).mean()), 4)}))
"""


def run(n: int, threads: int, seed: int) -> dict:
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(seed)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return {"threads": threads, **json.loads(out.strip().splitlines()[-1])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=632_000)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    rows = []
    for t in a.threads:
        rows.append(run(a.n, t, a.seed))
        print(json.dumps(rows[-1]), flush=True)
    t1 = next((r["seconds"] for r in rows if r["threads"] == 1), None)
    for r in rows:
        if t1 and r["threads"] > 1:
            r["parallel_fraction"] = round((1 - r["seconds"] / t1) / (1 - 1 / r["threads"]), 3)
    same = len({r["labels_sha256"] for r in rows}) == 1
    result = {"n": a.n, "seed": a.seed, "min_samples": 300, "min_cluster_size": 10, "rows": rows,
              "labels_identical": same}
    print(json.dumps(result, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
