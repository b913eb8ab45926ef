"""How cuML's UMAP + HDBSCAN labels compare with the CPU path (umap-learn + fast_hdbscan). Needs a GPU and cuML.

Two comparisons on the same data, by adjusted Rand index (ARI) over all points:

* ``hdbscan_only``: both HDBSCANs on the same (CPU) 5-D UMAP embedding: isolates the clusterer;
* ``full``: the whole ``RareClassSearch`` with ``device="cpu"`` and ``device="cuda"``: UMAP differs too.

Data: ``REPS`` (a representation table) or, without it, Gaussian blobs in 16-D with a few small,
rare groups (``--n``). Results go to ``benchmarks/results/cuml_agreement.json``.

    python benchmarks/cuml_agreement.py                # synthetic, 20k points
    python benchmarks/cuml_agreement.py reps.parquet --min-samples 300
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reps", nargs="?")
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--min-samples", type=int, default=50)
    p.add_argument("--min-cluster-size", type=int, default=10)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "cuml_agreement.json"))
    args = p.parse_args(argv)
    try:
        import cuml  # noqa: F401
    except ImportError:
        print("cuml_agreement: cuML is not installed (pip install 'raregal[gpu]'); nothing measured")
        return 0
    from sklearn.datasets import make_blobs
    from sklearn.metrics import adjusted_rand_score

    from raregal.inputs.tables import feature_matrix, read_table
    from raregal.discovery.hdbscan_leaves import leaf_clusters
    from raregal.discovery.estimator import RareClassSearch

    if args.reps:
        X = feature_matrix(read_table(args.reps)).astype(np.float32)
    else:
        sizes = [args.n // 4] * 3 + [args.n // 4 - 3 * 60] + [60, 60, 60]
        X, _ = make_blobs(n_samples=sizes, n_features=16, cluster_std=1.0, random_state=0)
        X = X.astype(np.float32)
    kw = dict(min_samples=args.min_samples, min_cluster_size=args.min_cluster_size, map_2d=False, random_state=0)
    result = {"n": len(X)}
    t = time.perf_counter()
    cpu = RareClassSearch(device="cpu", **kw).fit(X)
    result["cpu_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    gpu = RareClassSearch(device="cuda", **kw).fit(X)
    result["gpu_seconds"] = time.perf_counter() - t
    same = leaf_clusters(cpu.embedding_, args.min_samples, args.min_cluster_size, backend="cuml")
    result.update({
        "clusters_cpu": int(cpu.labels_.max() + 1), "clusters_gpu": int(gpu.labels_.max() + 1),
        "ari_full": adjusted_rand_score(cpu.labels_, gpu.labels_),
        "ari_hdbscan_only": adjusted_rand_score(cpu.labels_, same.labels),
        "noise_cpu": float((cpu.labels_ < 0).mean()), "noise_gpu": float((gpu.labels_ < 0).mean()),
    })
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
