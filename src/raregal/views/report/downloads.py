"""Per-cluster member lists as CSV and FITS (astropy), and the run's whole clusters.parquet.

Both carry ``ra``/``dec`` when the run has them: plain degrees in the CSV, with ``TUNIT = 'deg'``
in the FITS table.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from raregal.atomic import atomic_path, write_text
from raregal.inputs.sky import unit_table


def members_table(clusters: pd.DataFrame, k: int, extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows of cluster ``k``, most confident first; ``extra`` (id_str + columns) joined on id_str."""
    members = clusters[clusters["cluster"] == k].sort_values("probability", ascending=False, kind="stable")
    if extra is not None:
        members = members.merge(extra, on="id_str", how="left", suffixes=("", "_input"))
    return members.reset_index(drop=True)


def write_fits(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``frame`` as a FITS binary table atomically: text columns as UTF-8 strings, ``ra``/``dec`` in deg."""
    table = unit_table(frame)  # TUNITn = 'deg' for ra/dec, so TOPCAT and astropy read them as angles
    with atomic_path(path) as tmp:
        table.write(tmp, format="fits", overwrite=True)
    return Path(path)


def write_cluster_files(members: pd.DataFrame, folder: Path, stem: str) -> dict[str, str]:
    """``stem.csv`` and ``stem.fits`` in ``folder``; returns {"csv": relpath, "fits": relpath}."""
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / f"{stem}.csv", members.to_csv(index=False))
    write_fits(members, folder / f"{stem}.fits")
    return {"csv": f"{folder.name}/{stem}.csv", "fits": f"{folder.name}/{stem}.fits"}


def copy_clusters(run_dir: Path, folder: Path) -> str:
    """Copy the run's clusters.parquet into ``folder``; returns its path relative to the report."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "clusters.parquet") as tmp:
        shutil.copyfile(run_dir / "clusters.parquet", tmp)
    return f"{folder.name}/clusters.parquet"
