"""Reading a run directory (the output of ``raregal search``) for reports and the explorer.

A run directory holds ``clusters.parquet`` (one row per input galaxy), ``condensed_tree.parquet``
and ``summary.json`` (see the README's data contracts). :func:`load_run` reads them into a
:class:`Run`, checks the columns the pictures need, and says where the images are: the run's own
``file_loc``; for a run of a catalog with the images inside, the ``image_shard``/``image_row``
its representation table carries (:mod:`raregal.embedded`); or a catalog given by the user.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import sky
from ..catalog import FILE_LOC, ID, absolute_file_locs, check_ids, has_images, read_table, source_columns
from ..embedded import ROW, SHARD, has_image_column, read_embedded_catalog
from ..errors import InputError

log = logging.getLogger("raregal")

_NEEDED = ("id_str", "cluster", "probability", "kept")


@dataclass
class Run:
    """One search result, as the report and explorer use it."""

    path: Path
    clusters: pd.DataFrame  # one row per input galaxy (run's clusters.parquet, plus where the images are)
    summary: dict
    tree: pd.DataFrame | None  # condensed tree (parent, child, lambda_val, child_size) or None
    cluster_info: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per cluster

    @property
    def kept(self) -> pd.DataFrame:
        """Rows that passed the pre-filter (the points of the map and of the condensed tree)."""
        return self.clusters[self.clusters["kept"]]

    @property
    def has_map(self) -> bool:
        """True when the run has its 2-D map (``umap2_0``, ``umap2_1``; absent after ``--no-2d``)."""
        return {"umap2_0", "umap2_1"} <= set(self.clusters.columns)

    @property
    def has_images(self) -> bool:
        """True when the run says where some images are (:func:`raregal.catalog.image_sources`)."""
        return has_images(self.clusters)


def _cluster_info(clusters: pd.DataFrame, summary: dict) -> pd.DataFrame:
    """One row per cluster: cluster, size, persistence, tree_node, mean_probability (summary wins)."""
    members = clusters[clusters["cluster"] >= 0]
    counted = members.groupby("cluster").agg(size=("id_str", "size"),
                                             mean_probability=("probability", "mean")).reset_index()
    listed = pd.DataFrame(summary.get("clusters") or [])
    if listed.empty:
        info = counted.assign(persistence=np.nan, tree_node=-1)
    else:
        if "cluster" not in listed.columns:
            raise InputError("summary.json: entries of 'clusters' lack the key 'cluster'")
        info = listed.merge(counted, on="cluster", how="outer", suffixes=("", "_counted"))
        for col in ("size", "mean_probability"):
            if col in info.columns and f"{col}_counted" in info.columns:
                info[col] = info[col].fillna(info[f"{col}_counted"])
            elif f"{col}_counted" in info.columns:
                info[col] = info[f"{col}_counted"]
        info = info.drop(columns=[c for c in info.columns if c.endswith("_counted")])
    for col, default in (("persistence", np.nan), ("tree_node", -1)):
        if col not in info.columns:
            info[col] = default
    info["size"] = info["size"].fillna(0).astype(int)
    info["tree_node"] = info["tree_node"].fillna(-1).astype(int)
    return info.sort_values("cluster").reset_index(drop=True)


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    """``run_dir`` as a Path, after a cheap check that it holds a run; raises InputError if not.

    Lets a command fail at once, before anything slow, on a mistyped run directory.
    """
    path = Path(run_dir)
    for name in ("clusters.parquet", "summary.json"):
        if not (path / name).exists():
            raise InputError(f"{path}: not a run directory ({name} missing); run `raregal search` first")
    return path


def load_run(run_dir: str | os.PathLike, catalog: str | os.PathLike | None = None) -> Run:
    """Read ``run_dir`` and attach image paths.

    Parameters
    ----------
    run_dir : folder written by ``raregal search``.
    catalog : optional catalog joined on ``id_str``: where it says the images are replaces what the
        run says, its ``file_loc`` (relative paths are relative to the catalog's folder) or, for a
        Parquet catalog with the images inside, its shards (:mod:`raregal.embedded`); its
        ``ra``/``dec`` are added when the run has no sky coordinates. Without images from the
        catalog, a run that has no ``file_loc`` takes ``image_shard``/``image_row`` from its
        representation table.

    Raises InputError naming the file or column when the run directory is incomplete.
    """
    path = check_run_dir(run_dir)
    cpath, spath = path / "clusters.parquet", path / "summary.json"
    clusters = read_table(cpath)
    missing = [c for c in _NEEDED if c not in clusters.columns]
    if missing:
        raise InputError(f"{cpath}: missing column(s) {', '.join(missing)}")
    clusters["kept"] = clusters["kept"].astype(bool)
    clusters["cluster"] = clusters["cluster"].astype(np.int64)
    try:
        summary = json.loads(spath.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{spath}: not valid JSON: {err}") from err
    tpath = path / "condensed_tree.parquet"
    tree = read_table(tpath) if tpath.exists() else None
    if tree is not None:
        bad = [c for c in ("parent", "child", "lambda_val", "child_size") if c not in tree.columns]
        if bad:
            raise InputError(f"{tpath}: missing column(s) {', '.join(bad)}")
    clusters = sky.with_coordinates(clusters, str(cpath))
    run = Run(path=path, clusters=clusters, summary=summary, tree=tree)
    if catalog is not None:
        clusters = _join_catalog(clusters, catalog)
    if not has_images(clusters):
        where = read_input(run, [SHARD, ROW])  # a run of a catalog with the images inside
        if where is not None and source_columns(where) == [SHARD, ROW]:
            clusters = _join_images(clusters, where.drop_duplicates(ID))
    run.clusters = clusters.reset_index(drop=True)
    run.cluster_info = _cluster_info(clusters, summary)
    return run


def _join_images(clusters: pd.DataFrame, where: pd.DataFrame) -> pd.DataFrame:
    """``clusters`` with its image columns replaced by those of ``where`` (``id_str`` + source columns)."""
    return clusters.drop(columns=[FILE_LOC, SHARD, ROW], errors="ignore").merge(where, on=ID, how="left")


def _join_catalog(clusters: pd.DataFrame, catalog) -> pd.DataFrame:
    """The run's rows with the catalog's images (replacing the run's) and, when the run has none, ``ra``/``dec``.

    The catalog needs ``id_str`` and images (``file_loc``, or an ``image`` column of a Parquet
    catalog, read without its bytes) or ``ra``/``dec`` (or both); InputError when it has neither,
    or when none of the run's ids is in it.
    """
    inside = Path(catalog).exists() and has_image_column(catalog)
    cat = read_embedded_catalog(catalog) if inside else read_table(catalog)
    if len(cat) == 0:
        raise InputError(f"{catalog}: the catalog has no rows")
    check_ids(cat, str(catalog))
    cat = sky.with_coordinates(cat, str(catalog))
    images = source_columns(cat)
    cols = list(images)
    if sky.has_coordinates(cat) and not sky.has_coordinates(clusters):
        cols += [sky.RA, sky.DEC]
    if not cols:
        raise InputError(f"{catalog}: the catalog has neither '{FILE_LOC}' (image paths; or an 'image' column with "
                         "the images inside) nor sky coordinates the run lacks ('ra', 'dec')")
    if FILE_LOC in cols:
        cat = absolute_file_locs(cat, catalog)
    drop = [FILE_LOC, SHARD, ROW] * bool(images) + [c for c in cols if c not in images]
    joined = clusters.drop(columns=drop, errors="ignore").merge(cat[[ID] + cols], on=ID, how="left")
    if not joined[ID].isin(cat[ID]).any():
        raise InputError(f"{catalog}: none of the run's {len(clusters)} id_str values is in the catalog")
    if sky.RA in cols:
        log.info("%s: sky coordinates of %d of the run's %d galaxies joined on id_str", catalog,
                 int(joined[sky.RA].notna().sum()), len(joined))
    return joined


def input_path(run: Run) -> Path | None:
    """The representation table the run was made from (``summary["input"]``), or None if it is gone."""
    src = run.summary.get("input")
    return Path(src) if src and Path(src).exists() else None


def input_columns(run: Run) -> list[str] | None:
    """Column names of the run's input table without reading it (Parquet), else None."""
    src = input_path(run)
    if src is None:
        return None
    try:
        import pyarrow.parquet as pq

        return list(pq.ParquetDataset(src).schema.names)
    except Exception:  # not Parquet: the caller reads the whole table
        return None


def read_input(run: Run, columns: list[str]) -> pd.DataFrame | None:
    """``id_str`` + those of ``columns`` that the run's input table has, or None.

    None (and no error) when the table is gone or has none of the columns: a report is still
    worth making without predicted morphology or a neighbour index.
    """
    src = input_path(run)
    if src is None:
        return None
    names = input_columns(run)
    cols = [c for c in columns if names is None or c in names]
    if not cols:
        return None
    try:
        frame = read_table(src, columns=[ID] + cols if names is not None else None)
    except InputError:
        return None
    keep = [c for c in cols if c in frame.columns]
    if not keep or ID not in frame.columns:
        return None
    return frame[[ID] + keep]
