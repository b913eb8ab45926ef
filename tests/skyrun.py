"""A copy of the tiny run (conftest.tiny_run_dir) with sky coordinates, for the sky and SAMP tests.

Every galaxy gets a position near the COSMOS field (RA ~150, Dec ~2.2 degrees), a few degrees
apart per cluster; with ``stack`` the 12 most confident members of cluster 1 are put on one
spot of the 2-D map, the dense spot a hover tooltip has to cope with.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

#: How many galaxies ``make_sky_run(stack=True)`` puts on one spot of the map.
STACKED = 12


def sky_positions(n: int, clusters: np.ndarray, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (ra, dec) in degrees: each cluster around its own centre, the rest scattered."""
    rng = np.random.default_rng(seed)
    ra = 150.0 + rng.uniform(-1.0, 1.0, n) + 0.5 * np.maximum(clusters, 0)
    dec = 2.2 + rng.uniform(-1.0, 1.0, n)
    return ra, dec


def make_sky_run(tiny_run_dir: Path, dest: Path, stack: bool = False) -> Path:
    """Copy ``tiny_run_dir`` into ``dest/run`` with ``ra``/``dec`` in its clusters.parquet; returns the copy."""
    run = dest / "run"
    shutil.copytree(tiny_run_dir, run, ignore=shutil.ignore_patterns("report", "similar", ".raregal.lock"))
    clusters = pd.read_parquet(run / "clusters.parquet")
    clusters["ra"], clusters["dec"] = sky_positions(len(clusters), clusters["cluster"].to_numpy())
    if stack:
        members = clusters.index[clusters["cluster"] == 1]
        top = clusters.loc[members].sort_values("probability", ascending=False).index[:STACKED]
        spot = clusters.loc[top, ["umap2_0", "umap2_1"]].median()
        jitter = np.random.default_rng(0).normal(0, 1e-4, size=(STACKED, 2))
        for j, col in enumerate(("umap2_0", "umap2_1")):
            clusters.loc[top, col] = (spot[col] + jitter[:, j]).astype(clusters[col].dtype)
    clusters.to_parquet(run / "clusters.parquet")
    return run
