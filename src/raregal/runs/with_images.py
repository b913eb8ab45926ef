"""A run directory (the output of ``raregal search``) with its images, as the report and the explorer use it.

:func:`load_run` reads the folder with :func:`raregal.runs.model.read_run` (which owns the files)
and returns the same :class:`~raregal.runs.model.Run`, its per-galaxy table joined with where the
images are: the run's own ``file_loc``; for
a run of a catalog with the images inside, the ``image_shard``/``image_row`` its representation
table carries (:mod:`raregal.inputs.shards`); or a catalog given by the user. It also checks the sky
coordinates (:func:`raregal.inputs.sky.with_coordinates`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from raregal.inputs import sky
from raregal.inputs.tables import FILE_LOC, ID, absolute_file_locs, check_ids, has_images, read_table, source_columns
from raregal.inputs.shards import ROW, SHARD, has_image_column, read_embedded_catalog
from raregal.errors import InputError
from raregal.runs.model import CLUSTERS, Run, check_run_dir, read_run

log = logging.getLogger("raregal")

__all__ = ["check_run_dir", "load_run", "input_path", "input_columns", "read_input"]


def load_run(run_dir: str | os.PathLike, catalog: str | os.PathLike | None = None) -> Run:
    """Read ``run_dir`` (:func:`raregal.runs.model.read_run`) and attach image paths.

    Parameters
    ----------
    run_dir : folder written by ``raregal search``.
    catalog : optional catalog joined on ``id_str``: where it says the images are replaces what the
        run says, its ``file_loc`` (relative paths are relative to the catalog's folder) or, for a
        Parquet catalog with the images inside, its shards (:mod:`raregal.inputs.shards`); its
        ``ra``/``dec`` are added when the run has no sky coordinates. Without images from the
        catalog, a run that has no ``file_loc`` takes ``image_shard``/``image_row`` from its
        representation table.

    Raises InputError naming the file or column when the run directory is incomplete.
    """
    run = read_run(run_dir)
    clusters = sky.with_coordinates(run.clusters, str(run.path / CLUSTERS))
    if catalog is not None:
        clusters = _join_catalog(clusters, catalog)
    if not has_images(clusters):
        where = read_input(run, [SHARD, ROW])  # a run of a catalog with the images inside
        if where is not None and source_columns(where) == [SHARD, ROW]:
            clusters = _join_images(clusters, where.drop_duplicates(ID))
    run.clusters = clusters.reset_index(drop=True)
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
