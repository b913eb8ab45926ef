"""The rows of a Parquet table, partition by partition on the workers: read, checked, pre-filtered.

Each partition (a Parquet file or row group, as ``dask.dataframe.read_parquet`` splits it) is
read on a worker and pre-filtered there with the one-machine search's own cuts
(:mod:`raregal.discovery.prefilter`). What comes back to the client is small (ids, the columns a
run carries, the kept mask, the counts); the kept representations stay on the worker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from raregal.errors import InputError
from raregal.inputs import sky
from raregal.inputs.tables import FILE_LOC, ID, representation_columns, representation_table

#: Columns a run carries from the input when present (as one machine's galaxy_table does).
CARRIED = (FILE_LOC, "true_class", sky.RA, sky.DEC)


def parquet_names(source) -> list[str]:
    """Column names of the Parquet table at ``source`` (file or folder); InputError for other formats."""
    import pyarrow.parquet as pq

    path = Path(source)
    if not path.exists():
        raise InputError(f"{source}: no such file or folder", param="reps")
    try:
        return list(pq.ParquetDataset(path).schema.names)
    except Exception as err:
        raise InputError(f"{source}: --dask reads a Parquet table (a file or a folder of parts, as "
                         f"'raregal embed --dask' writes); this is not one ({type(err).__name__}: {err}). "
                         "Convert it with pandas' to_parquet, or search it without --dask", param="dask") from err


def n_partitions(source, n_files: int, rows_per_partition: int) -> int:
    """How many partitions of about ``rows_per_partition`` rows the table at ``source`` makes (at most
    ``n_files``, what ``dask.dataframe.read_parquet`` starts from), from the first part's row count."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(source), format="parquet")
    first = next(iter(dataset.get_fragments()), None)
    rows = first.count_rows() if first is not None else 0
    return max(1, min(n_files, -(-(rows * n_files) // rows_per_partition)))


def wanted_columns(names: list[str], features: str | None, fractions: list[str]) -> list[str]:
    """The columns a search reads: id, representation, the pre-filter's fractions and the carried ones."""
    wanted = {ID, *representation_columns(names, features), *fractions, *CARRIED}
    return [c for c in names if c in wanted]


def read_partition(frame: pd.DataFrame, features: str | None, cuts, drop_invalid: bool, where: str,
                   artifact_column: str | None = None) -> dict:
    """One partition, checked and pre-filtered: ``meta`` (id, carried columns, the ``artifact_column``
    the cluster checks read, ``kept``), ``counts``, ``X`` (kept rows, float32)."""
    from raregal.discovery.pipeline import _valid_rows
    from raregal.discovery.prefilter import prefilter

    frame = frame.reset_index(drop=True)
    if len(frame) == 0:  # an empty part: no rows, the representation's width unknown (no piece is cut from it)
        return {"meta": pd.DataFrame({ID: pd.Series([], dtype=object), "kept": np.zeros(0, bool)}),
                "counts": {"input": 0}, "X": None}
    frame, X = representation_table(frame, features, where=where)
    valid = _valid_rows(frame, X, drop_invalid)
    kept, counts = prefilter(frame, cuts, keep=None if valid.all() else valid)
    meta = frame[[c for c in (ID, *CARRIED, artifact_column) if c is not None and c in frame.columns]].copy()
    meta["kept"] = kept
    return {"meta": meta, "counts": counts, "X": np.ascontiguousarray(X[kept], dtype=np.float32)}


def add_counts(counts: list[dict]) -> dict:
    """The pre-filter's counts of the whole table from those of its partitions (in the first one's order)."""
    keys = list(dict.fromkeys(k for c in counts for k in c))
    if "valid" in keys:  # a partition with no invalid row does not say so
        counts = [{**c, "valid": c.get("valid", c.get("input", 0))} for c in counts]
    total = {k: int(sum(c.get(k, 0) for c in counts)) for k in keys if not k.startswith("skipped_")}
    total.update({k: 1 for k in keys if k.startswith("skipped_")})
    return total


def take(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of one partition's kept representations (what the client gathers for a sample)."""
    return X[rows]
