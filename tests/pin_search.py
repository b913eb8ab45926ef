"""Make (or print) tests/data/pinned_search.json: what `raregal search` writes for a fixed table and seed.

Run it once before a change to the search's code layout (``python tests/pin_search.py --write``);
``tests/test_pinned_search.py`` then holds every later version to the same values.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

PINNED = Path(__file__).parent / "data" / "pinned_search.json"
PARAMS = dict(n_neighbors=15, min_samples=8, min_cluster_size=10, seed=7, report=False, stability=2, layout="umap-learn")

#: The values that do not depend on the machine's floating point (the table's columns, which rows the
#: pre-filter keeps, the counts, the recovery of the planted groups and the parameters). The rest
#: (labels, coordinates, the tree) follow umap-learn's SGD, whose float results change with numba's
#: code for the host CPU and with the numeric libraries' versions; those are pinned per environment.
PORTABLE = ("columns", "kept", "counts", "metrics", "parameters")
#: Packages whose versions change the layout's floating point.
NUMERIC_PACKAGES = ("numpy", "scipy", "numba", "llvmlite", "umap-learn", "pynndescent", "hdbscan",
                    "fast_hdbscan", "scikit-learn")


def environment() -> dict:
    """What the exact values depend on: the CPU numba compiles for and the numeric packages' versions."""
    from importlib.metadata import version

    import llvmlite.binding as llvm

    return {"cpu": llvm.get_host_cpu_name(), **{p: version(p) for p in NUMERIC_PACKAGES}}


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


if __name__ == "__main__":
    values = pinned_values()
    if "--write" in sys.argv:
        PINNED.write_text(json.dumps(values, indent=None, separators=(",", ":")) + "\n")
        print(f"wrote {PINNED}")
    else:
        print(json.dumps({k: v for k, v in values.items() if k not in ("labels", "kept", "probability", "umap5",
                                                                         "umap2")}, indent=1))
