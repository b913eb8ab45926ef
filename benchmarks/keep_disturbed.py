"""What ``--keep-disturbed`` does on the demo survey: shells_streams recovered, ellipticals let in.

Runs the demo's search (its parameters, seed 1) on ``demo_run/reps.parquet`` (made by ``make demo``)
with the paper's pre-filter and with ``keep_disturbed`` at a few thresholds, and prints per
threshold: galaxies rescued from the smooth cut, how many of them are shells_streams and how many
ordinary ellipticals (bulk ``subtype == "elliptical"``), shells_streams' recall and purity, and the
classes recovered.

    python benchmarks/keep_disturbed.py [--demo demo_run] [--thresholds 0.2 0.3 0.5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd

from raregal.demo import DemoConfig
from raregal.discovery.pipeline import run_search


def measure(demo: Path, threshold: float | None, out: Path) -> dict:
    cfg = DemoConfig()
    reps = pd.read_parquet(demo / "reps.parquet")
    cat = pd.read_parquet(demo / "survey" / "catalog.parquet", columns=["id_str", "subtype"])
    summary = run_search(demo / "reps.parquet", out, n_neighbors=cfg.n_neighbors, min_samples=cfg.min_samples,
                         min_cluster_size=cfg.min_cluster_size, seed=cfg.seed, report=False, map_2d=False,
                         keep_disturbed=threshold, overwrite=True)
    table = pd.read_parquet(out / "clusters.parquet").merge(cat, on="id_str").merge(
        reps[["id_str", "smooth-or-featured_smooth_fraction"]], on="id_str")
    rescued = table[table["kept"] & (table["smooth-or-featured_smooth_fraction"] >= 0.5)]
    shells = summary["metrics"]["classes"]["shells_streams"]
    return {"keep_disturbed": threshold, "kept": summary["counts"]["kept"],
            "rescued": summary["counts"].get("rescued_smooth", 0),
            "rescued_shells_streams": int((rescued["true_class"] == "shells_streams").sum()),
            "rescued_ellipticals": int(((rescued["true_class"] == "bulk") & (rescued["subtype"] == "elliptical")).sum()),
            "shells_streams_recall": shells["recall"], "shells_streams_purity": shells["purity"],
            "n_recovered": summary["metrics"]["n_recovered"], "n_clusters": summary["n_clusters"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default="demo_run", type=Path)
    ap.add_argument("--thresholds", nargs="+", type=float, default=[0.2, 0.3, 0.5])
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in [None, *args.thresholds]:
            rows.append(measure(args.demo, t, Path(tmp) / "run"))
            print(json.dumps(rows[-1]), flush=True)
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
