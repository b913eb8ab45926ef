"""Make (or print) the values ``tests/test_pinned_search.py`` holds the search to, in two pins.

``tests/data/pinned_search_portable.json``: what the search must find on **every** machine. The
table (:func:`portable_table`) is six well-separated planted groups whose sizes all lie between
``min_cluster_size`` and twice it (no group can split into two leaves) plus rows the pre-filter
drops; it is made from integer random draws and exactly rounded elementwise arithmetic only (no
BLAS, no libm), so its bits are the same everywhere (its SHA-256 is pinned). Pinned: the table's
hash, which rows the pre-filter keeps, the counts, the k-NN graph (exact below 8,192 rows: float32
products only screen candidates, whose distances are recomputed in float64, so the graph does not
depend on the BLAS kernel) and, for each layout, the partition of the kept rows into clusters (up
to relabelling: the canonical numbering follows the condensed tree's node ids, which follow the
layout), the cluster sizes, the recovery and the stability scores. Not the merge suggestions:
which groups are siblings in the condensed tree follows the layout too.

``tests/data/pinned_search.json``: every value ``raregal search`` writes (labels, coordinates,
probabilities, tree, merges) for a planted table with a broad bulk, bit for bit. Those follow the
layout's floating point, which is not the same on another machine (measured, see
``test_pinned_search.py``): the CPU numba compiles for (umap-learn's SGD kernels are
``fastmath``), OpenBLAS's kernel (PCA initialisation) and numpy's SIMD loops (umap-learn's ``a``,
``b`` fit). So the file records :func:`environment` and the exact values are compared only there.

Regenerate (from a commit whose search you trust; the portable pin on any machine, the exact pin
records the machine it is made on)::

    .venv/bin/python tests/pin_search.py --write-portable   # tests/data/pinned_search_portable.json
    .venv/bin/python tests/pin_search.py --write            # tests/data/pinned_search.json

Without ``--write*`` it prints the values (``--portable``: the portable pin's).

The exact pin was made on a ``rocketlake`` CPU, recording only ``cpu`` and the versions; its
``blas`` and ``simd`` entries were added later, from a ``znver4`` host (OpenBLAS ``SkylakeX``, numpy
``X86_V3 X86_V4 AVX512_ICL``) on which ``NUMBA_CPU_NAME=rocketlake`` reproduced every pinned bit. So
on an x86-64 CPU with those, the exact comparison runs with (numba compiles umap-learn's kernels
for that target anew, a minute or two the first time; a separate cache keeps them apart)::

    NUMBA_CPU_NAME=rocketlake NUMBA_CACHE_DIR=/tmp/numba-rocketlake \
        .venv/bin/python -m pytest -q tests/test_pinned_search.py -rs
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

PINNED = Path(__file__).parent / "data" / "pinned_search.json"
PARAMS = dict(n_neighbors=15, min_samples=8, min_cluster_size=10, seed=7, report=False, stability=2, layout="umap-learn")

#: The values of the exact pin that do not depend on the machine's floating point (the table's
#: columns, which rows the pre-filter keeps, the counts, the recovery of the planted groups and the
#: parameters). The rest (labels, coordinates, the tree) follow umap-learn's SGD, whose float results
#: change with numba's code for the host CPU and with the numeric libraries' versions.
PORTABLE = ("columns", "kept", "counts", "metrics", "parameters")
#: Packages whose versions change the layout's floating point.
NUMERIC_PACKAGES = ("numpy", "scipy", "numba", "llvmlite", "umap-learn", "pynndescent", "hdbscan",
                    "fast_hdbscan", "scikit-learn")

PORTABLE_PINNED = Path(__file__).parent / "data" / "pinned_search_portable.json"
#: Sizes of the planted groups of :func:`portable_table`: all in [min_cluster_size, 2 min_cluster_size).
GROUP_SIZES = (22, 25, 28, 31, 34, 37)
#: Rows the pre-filter drops: smooth, edge-on and artifact galaxies (placed among the groups).
DROPPED = (12, 10, 8)
PORTABLE_DIM = 16
PORTABLE_PARAMS = dict(n_neighbors=15, min_samples=8, min_cluster_size=20, seed=7, report=False, stability=2)
#: The layouts the portable pin covers (``auto`` picks ``umap-learn`` at this size).
PORTABLE_LAYOUTS = ("umap-learn", "deterministic")


def environment() -> dict:
    """What the exact values depend on, besides the code: the floating point of this machine and packages.

    ``cpu``: the CPU numba compiles for (the host's unless ``NUMBA_CPU_NAME`` names another);
    ``blas``: the BLAS libraries numpy and scipy load and the kernel each chose (OpenBLAS picks one
    per CPU; ``OPENBLAS_CORETYPE`` overrides it); ``simd``: the SIMD extensions numpy's loops use
    (``NPY_DISABLE_CPU_FEATURES`` removes some); and the numeric packages' versions.
    """
    from importlib import import_module
    from importlib.metadata import version

    import llvmlite.binding as llvm
    import numba
    from threadpoolctl import threadpool_info

    import_module("scipy.linalg")  # loads scipy's BLAS, so that threadpoolctl lists it too

    blas = sorted({f"{i['internal_api']} {i.get('architecture') or '?'}" for i in threadpool_info()
                   if i["user_api"] == "blas"})
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
        simd = " ".join(f for f in __cpu_dispatch__ if __cpu_features__.get(f))
    except ImportError:  # numpy < 2 keeps them in numpy.core
        simd = "?"
    return {"cpu": numba.config.CPU_NAME or llvm.get_host_cpu_name(), "blas": ", ".join(blas), "simd": simd,
            **{p: version(p) for p in NUMERIC_PACKAGES}}


def pinned_values() -> dict:
    """Run the search on the pinned table and return the values it wrote, rounded for JSON."""
    from raregal.evaluation.planted import make_planted
    from raregal.runs.model import read_run
    from raregal.discovery.pipeline import run_search

    frame = make_planted(n=1500, dim=16, group_fractions=(0.01, 0.02, 0.03),
                                    artifact_group_fraction=0.01, seed=11)
    with tempfile.TemporaryDirectory() as tmp:
        frame.to_parquet(Path(tmp) / "reps.parquet")
        run_search(Path(tmp) / "reps.parquet", Path(tmp) / "run", **PARAMS)
        table = pd.read_parquet(Path(tmp) / "run" / "clusters.parquet")
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
        tree = pd.read_parquet(Path(tmp) / "run" / "condensed_tree.parquet")
        merges = read_run(Path(tmp) / "run").merges  # summary.json's merge_suggestions (once also a CSV)
    kept = table["kept"].to_numpy()
    return {
        "columns": list(table.columns),
        "labels": table["cluster"].tolist(),
        "kept": kept.astype(int).tolist(),
        "probability": np.round(table["probability"].to_numpy(float), 4).tolist(),
        "umap5": np.round(table.loc[kept, [f"umap5_{i}" for i in range(5)]].to_numpy(float), 3).tolist(),
        "umap2": np.round(table.loc[kept, ["umap2_0", "umap2_1"]].to_numpy(float), 3).tolist(),
        "counts": summary["counts"],
        "clusters": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in c.items()}
                     for c in summary["clusters"]],
        "metrics": {"n_recovered": summary["metrics"]["n_recovered"], "n_classes": summary["metrics"]["n_classes"]},
        "tree_rows": len(tree),
        "merges": merges.round(4).to_dict(orient="records"),
        "parameters": summary["parameters"],
        "environment": environment(),
    }


def _normal(rng: np.random.Generator, shape) -> np.ndarray:
    """About standard normal (Irwin-Hall: 12 uniforms summed, less 6), the same bits on any machine.

    ``Generator.random`` turns 53 random bits into a double exactly; the sum runs one elementwise,
    exactly rounded addition at a time (no reduction whose order a SIMD loop could change).
    """
    u = rng.random((12, *shape))
    total = u[0].copy()
    for part in u[1:]:
        total = total + part
    return total - 6.0


def portable_table(seed: int = 5) -> pd.DataFrame:
    """The portable pin's representation table: planted groups far apart, plus rows the pre-filter drops.

    Group ``k`` (``planted_<k>``, :data:`GROUP_SIZES`) is centred at ``20 e_k`` with unit spread in
    each of :data:`PORTABLE_DIM` dimensions: centres 28 apart, a group's rows within about 10 of one
    another, so every row's 15 nearest neighbours lie in its own group and the k-NN graph has no
    edge between groups. :data:`DROPPED` rows (``bulk``: smooth, edge-on, artifact) sit among the
    groups; the pre-filter must remove them before the graph is made, or the groups grow. Row order
    is shuffled. Built from integer draws and elementwise arithmetic only (see :func:`_normal`).
    """
    from raregal.inputs.gz_trees import ARTIFACT_FRACTION, EDGE_ON_FRACTION, SMOOTH_FRACTION

    rng = np.random.default_rng(seed)
    group = np.concatenate([np.full(size, k) for k, size in enumerate(GROUP_SIZES)])
    n_kept, n_drop = len(group), sum(DROPPED)
    home = np.concatenate([group, rng.integers(0, len(GROUP_SIZES), n_drop)])  # dropped rows' group
    centres = np.zeros((len(home), PORTABLE_DIM))
    centres[np.arange(len(home)), home] = 20.0
    X = (centres + _normal(rng, centres.shape)).astype(np.float32)
    n = len(home)
    smooth, edge_on, artifact = 0.45 * rng.random(n), 0.25 * rng.random(n), 0.2 * rng.random(n)
    role = np.repeat([0, 1, 2, 3], (n_kept, *DROPPED))  # kept, smooth, edge-on, artifact
    smooth[role == 1] = 0.5 + 0.5 * rng.random(DROPPED[0])
    edge_on[role == 2] = 0.3 + 0.7 * rng.random(DROPPED[1])
    artifact[role == 3] = 0.3 + 0.7 * rng.random(DROPPED[2])
    edge_on[role == 1] = np.nan  # not asked of smooth galaxies, as Zoobot writes it
    classes = np.where(role == 0, np.char.add("planted_", home.astype(str)), "bulk")
    order = rng.permutation(n)
    frame = pd.DataFrame(X[order], columns=[f"feat_{i}" for i in range(PORTABLE_DIM)])
    frame.insert(0, "true_class", classes[order].astype(object))
    frame.insert(0, "id_str", [f"P{i:05d}" for i in range(n)])
    frame[SMOOTH_FRACTION] = smooth[order].astype(np.float32)
    frame[EDGE_ON_FRACTION] = edge_on[order].astype(np.float32)
    frame[ARTIFACT_FRACTION] = artifact[order].astype(np.float32)
    return frame


def table_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a table's column names and values (numbers by their little-endian bytes, strings UTF-8)."""
    h = hashlib.sha256()
    for name in frame.columns:
        h.update(name.encode())
        values = frame[name].to_numpy()
        if values.dtype == object:
            h.update("\x00".join(map(str, values)).encode())
        else:
            h.update(np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def partition(labels) -> list:
    """Labels (ints, -1 for noise, or class names) renumbered by first appearance, noise staying -1.

    Two labellings of the same partition give the same list.
    """
    first: dict = {}
    return [-1 if isinstance(v, int) and v < 0 else first.setdefault(v, len(first))
            for v in np.asarray(labels).tolist()]


def portable_search(layout: str, frame: pd.DataFrame | None = None):
    """The search of :func:`portable_table` with :data:`PORTABLE_PARAMS` and ``layout`` (a SearchResult)."""
    from raregal.discovery.pipeline import search_table

    return search_table(portable_table() if frame is None else frame, {**PORTABLE_PARAMS, "layout": layout})


def portable_values() -> dict:
    """The values of the portable pin (see the module's docstring)."""
    frame = portable_table()
    out = {"table_sha256": table_digest(frame), "layouts": {}}
    for layout in PORTABLE_LAYOUTS:
        result = portable_search(layout, frame)
        run, kept = result.run, result.kept
        labels = run.clusters["cluster"].to_numpy()
        info = run.cluster_info
        out["kept"] = kept.astype(int).tolist()
        out["counts"] = result.counts
        indices, distances = result.estimator.knn_
        out["knn_indices"] = np.asarray(indices).tolist()  # kept rows' numbering (the fit's rows)
        out["knn_distances"] = [[float(d) for d in row] for row in np.asarray(distances)]
        out["layouts"][layout] = {
            "partition": partition(labels[kept]),
            "sizes": sorted(int(s) for s in info["size"]),
            "n_noise": int((labels[kept] < 0).sum()),
            "metrics": {k: run.summary["metrics"][k] for k in ("n_recovered", "n_classes")},
            "stability": sorted(float(s) for s in info["stability"]),
            "layout": run.summary["layout"],
        }
    out["parameters"] = {k: v for k, v in run.parameters.items() if k != "layout"}
    out["environment"] = environment()  # where it was made, for the record: the pin holds on any
    return out


if __name__ == "__main__":
    if "--write-portable" in sys.argv:
        PORTABLE_PINNED.write_text(json.dumps(portable_values(), indent=None, separators=(",", ":")) + "\n")
        print(f"wrote {PORTABLE_PINNED}")
    elif "--write" in sys.argv:
        PINNED.write_text(json.dumps(pinned_values(), indent=None, separators=(",", ":")) + "\n")
        print(f"wrote {PINNED}")
    elif "--portable" in sys.argv:
        print(json.dumps({k: v for k, v in portable_values().items() if not k.startswith("knn")}, indent=1))
    else:
        values = pinned_values()
        print(json.dumps({k: v for k, v in values.items() if k not in ("labels", "kept", "probability", "umap5",
                                                                         "umap2")}, indent=1))
