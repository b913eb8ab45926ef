"""Reading and checking tables: image catalogs and representation tables.

Two kinds of table enter raregal:

* an **image catalog** in Zoobot's convention: ``id_str`` (unique string id) and ``file_loc``
  (path of the image; a relative path is relative to the catalog's folder); or, instead of
  ``file_loc``, a Parquet catalog (file or folder of shards) with the images inside, in an
  ``image`` column (the Hugging Face ``datasets`` Image feature, :mod:`raregal.inputs.shards`).
  :func:`image_sources` is the one place that says where each galaxy's picture is;
* a **representation table**: ``id_str`` plus the representation, either as columns
  ``feat_0 … feat_{D-1}`` or as one fixed-length list/array column, and optionally the
  model's predicted vote fractions (``<answer>_fraction``, see :mod:`raregal.inputs.gz_trees`).

Tables may be Parquet (a file or a directory of parts, as Dask writes them), CSV, a FITS
binary table, or a NumPy ``.npy``/``.npz`` array (rows numbered, no ids). Every problem is an
:class:`~raregal.errors.InputError` that names the file, column or ids at fault.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from raregal.inputs.shards import ROW, SHARD, EmbeddedImages, has_image_column, read_embedded_catalog
from raregal.errors import InputError

ID = "id_str"
FILE_LOC = "file_loc"
FEATURE_PREFIX = "feat_"
_FEAT_RE = re.compile(r"^feat_(\d+)$")
_PARQUET = {".parquet", ".pq", ".parq"}
_FITS = {".fits", ".fit", ".fts"}


def _kind(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        return "parquet"
    for suffix in (".gz", ".bz2", ".xz", ".zip"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    ext = os.path.splitext(name)[1]
    if ext in _PARQUET:
        return "parquet"
    if ext in _FITS:
        return "fits"
    if ext in {".csv", ".tsv", ".txt"}:
        return "csv"
    if ext in {".npy", ".npz"}:
        return ext[1:]
    raise InputError(f"{path}: unknown table format {ext!r}; use Parquet, CSV, FITS, .npy or .npz")


def array_frame(X: np.ndarray, ids=None, path: Path | None = None) -> pd.DataFrame:
    """A representation table (``id_str``, ``feat_0``..``feat_{D-1}``) from an (N, D) array and (N,) ids."""
    X = np.asarray(X)
    if X.ndim != 2:
        where = f"{path}: expected" if path is not None else "X: expected"
        raise InputError(f"{where} a 2-D array (rows, features), got shape {X.shape}")
    if ids is not None and len(ids) != len(X):
        raise InputError(f"ids: {len(ids)} ids for {len(X)} rows", param="ids")
    frame = pd.DataFrame(X, columns=[f"{FEATURE_PREFIX}{i}" for i in range(X.shape[1])])
    ids = np.arange(len(X)) if ids is None else np.asarray(ids)
    frame.insert(0, ID, ids.astype(str))
    return frame


def _read_fits(path: Path, columns) -> pd.DataFrame:
    from astropy.table import Table

    table = Table.read(path, format="fits")
    data = {}
    for name in table.colnames:
        if columns is not None and name not in columns:
            continue
        col = table[name]
        if col.ndim > 1:  # a fixed-length vector per row: keep it as one list column
            data[name] = list(np.asarray(col))
        else:
            values = np.asarray(col)
            if values.dtype.kind == "S":
                values = np.char.decode(values, "utf-8")
            if values.dtype.byteorder not in ("=", "|"):
                values = values.astype(values.dtype.newbyteorder("="))
            data[name] = values
    return pd.DataFrame(data)


def read_table(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a table of any supported format into a DataFrame.

    Parameters
    ----------
    path : Parquet file or directory of Parquet parts, CSV, FITS table, ``.npy`` or ``.npz``.
        A ``.npy`` array of shape (N, D) becomes ``id_str`` = row number and ``feat_0..``;
        an ``.npz`` uses its array ``features`` (or its only array) and ``id_str``/``ids`` if present.
    columns : read only these columns where the format allows it (Parquet, FITS).

    Returns
    -------
    DataFrame with one row per table row, ``id_str`` as a string column when present.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    kind = _kind(path)
    if path.is_dir() and not any(p.suffix.lower() in _PARQUET for p in path.rglob("*") if p.is_file()):
        raise InputError(f"{path}: the folder holds no Parquet parts (*.parquet); give a table file or a "
                         "folder of Parquet parts")
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            frame = pq.read_table(path, columns=columns).to_pandas()
        elif kind == "csv":
            frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", usecols=columns,
                                dtype={ID: str} if columns is None or ID in columns else None)
        elif kind == "fits":
            frame = _read_fits(path, columns)
        elif kind == "npy":
            frame = array_frame(np.load(path, allow_pickle=False), path=path)
        else:  # npz
            with np.load(path, allow_pickle=False) as npz:
                names = list(npz.files)
                key = "features" if "features" in names else (names[0] if len(names) == 1 else None)
                if key is None:
                    raise InputError(f"{path}: .npz holds {names}; name the representation array 'features'")
                idkey = next((k for k in (ID, "ids") if k in names), None)
                frame = array_frame(npz[key], npz[idkey] if idkey else None, path)
    except InputError:
        raise
    except Exception as err:  # pyarrow, pandas and astropy raise many kinds; say which file
        raise InputError(f"{path}: cannot read as {kind}: {err}") from err
    if ID in frame.columns:
        frame[ID] = frame[ID].astype(str)
    return frame


def check_ids(frame: pd.DataFrame, where: str = "table") -> None:
    """Raise if ``id_str`` is missing, empty or duplicated (naming up to 10 duplicates)."""
    if ID not in frame.columns:
        raise InputError(f"{where}: missing column '{ID}' (columns: {', '.join(map(str, frame.columns[:20]))})")
    ids = frame[ID]
    if ids.isna().any():
        raise InputError(f"{where}: column '{ID}' has {int(ids.isna().sum())} empty values")
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        raise InputError(f"{where}: {len(dup)} duplicate '{ID}' values, e.g. {', '.join(map(str, dup[:10]))}")


def read_catalog(path: str | os.PathLike) -> pd.DataFrame:
    """Read an image catalog and say where each galaxy's image is.

    * With ``file_loc``: every relative ``file_loc`` is resolved against the catalog file's
      folder (made absolute), so a survey folder can be moved as a whole.
    * A Parquet catalog (file or folder of shards) with the images inside, in an ``image``
      column (Hugging Face ``datasets`` Image feature): read without the images' bytes, with
      ``image_shard`` and ``image_row`` saying where each image is
      (:func:`raregal.inputs.shards.read_embedded_catalog`); nothing is unpacked to disk.

    Other columns are kept as they are. Raises InputError for a catalog without ids or without
    images, and for one with both ``image`` and ``file_loc``.
    """
    path = Path(path)
    if path.exists() and _kind(path) == "parquet" and has_image_column(path):
        frame = read_embedded_catalog(path)
    else:
        frame = read_table(path)
    if len(frame) == 0:
        raise InputError(f"{path}: the catalog has no rows")
    check_ids(frame, str(path))
    if SHARD in frame.columns:
        return frame
    if FILE_LOC not in frame.columns:
        raise InputError(f"{path}: missing column '{FILE_LOC}' (the image path of each galaxy); or give a "
                         "Parquet catalog with the images inside, in a column 'image'")
    return absolute_file_locs(frame, path)


def absolute_file_locs(frame: pd.DataFrame, path: str | os.PathLike) -> pd.DataFrame:
    """``frame`` with each relative ``file_loc`` made absolute against the folder of the table ``path``."""
    base = Path(path).resolve().parent
    frame[FILE_LOC] = [
        loc if not isinstance(loc, str) or os.path.isabs(loc) else str(base / loc)
        for loc in frame[FILE_LOC]
    ]
    return frame


def source_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of ``frame`` that say where each image is: ``[file_loc]``, ``[image_shard, image_row]`` or []."""
    if SHARD in frame.columns and ROW in frame.columns:
        if FILE_LOC in frame.columns:
            raise InputError(f"the table has both '{FILE_LOC}' and '{SHARD}'/'{ROW}' (images inside a catalog); "
                             "raregal cannot tell which is each galaxy's picture")
        return [SHARD, ROW]
    return [FILE_LOC] if FILE_LOC in frame.columns else []


def has_images(frame: pd.DataFrame) -> bool:
    """True when ``frame`` says where at least one row's image is (:func:`source_columns`)."""
    cols = source_columns(frame)
    return bool(cols) and bool(frame[cols[0]].notna().any())


def image_sources(frame: pd.DataFrame):
    """The image of each row of ``frame``, in row order: the one place that decides where a picture is.

    Returns a sequence of ``len(frame)`` items, indexable by position and by an array of positions:

    * ``file_loc``: a NumPy object array of paths (None where missing);
    * ``image_shard``/``image_row`` (a catalog with the images inside, see :func:`read_catalog`):
      an :class:`~raregal.inputs.shards.EmbeddedImages`, whose items are
      :class:`~raregal.images.decode.EncodedImage` read on demand (InputError naming the id when one
      cannot be);
    * neither: an array of None.

    Every reader takes these items: :func:`raregal.images.dataset.load_image`, ``ImageDataset``,
    :func:`raregal.views.report.thumbs.load_preview`.
    """
    cols = source_columns(frame)
    if cols == [SHARD, ROW]:
        return EmbeddedImages.from_frame(frame)
    if cols:
        return np.array([None if not isinstance(v, (str, os.PathLike)) else v for v in frame[FILE_LOC]], dtype=object)
    return np.full(len(frame), None, dtype=object)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The ``feat_<i>`` columns of ``frame``, in index order (they must run 0..D-1 without gaps)."""
    found = sorted((int(m.group(1)), c) for c in frame.columns if (m := _FEAT_RE.match(str(c))))
    idx = [i for i, _ in found]
    if idx and idx != list(range(len(idx))):
        missing = sorted(set(range(max(idx) + 1)) - set(idx))
        raise InputError(f"feature columns are not feat_0..feat_{max(idx)}: missing {missing[:10]}")
    return [c for _, c in found]


def feature_matrix(frame: pd.DataFrame, features: str | None = None) -> np.ndarray:
    """Extract the representation as a float32 array of shape (N, D).

    ``features`` names a list/array column holding one vector per row, or a column prefix
    (``pca_`` for ``pca_0, pca_1, …``); by default the ``feat_<i>`` columns are used, else a
    single list column called ``features`` or ``representation``. Rows of the wrong length
    and non-numeric columns are errors naming them. NaN/inf are left for the caller.
    """
    if features is None:
        cols = feature_columns(frame)
        if not cols:
            for name in ("features", "representation"):
                if name in frame.columns:
                    return feature_matrix(frame, name)
            raise InputError(
                "no representation found: expected columns feat_0..feat_{D-1} or a list column "
                "(name it with --features)")
    elif features in frame.columns:
        return _stack_vectors(frame, features)
    else:
        cols = sorted((c for c in frame.columns if str(c).startswith(features) and str(c)[len(features):].isdigit()),
                      key=lambda c: int(str(c)[len(features):]))
        if not cols:
            raise InputError(f"--features {features!r}: no such column, and no columns {features}0, {features}1, …")
    bad = [c for c in cols if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])]
    if bad:
        raise InputError(f"non-numeric feature columns: {', '.join(map(str, bad[:10]))}")
    return frame[cols].to_numpy(dtype=np.float32)


def _stack_vectors(frame: pd.DataFrame, name: str) -> np.ndarray:
    values = frame[name].to_numpy()
    if values.dtype != object:
        if values.ndim == 1 and pd.api.types.is_numeric_dtype(values):
            return values.astype(np.float32)[:, None]
        raise InputError(f"column {name!r} holds {values.dtype}, not vectors")
    lengths = np.array([np.size(v) if v is not None else 0 for v in values])
    expected = int(np.bincount(lengths).argmax()) if len(lengths) else 0
    wrong = np.flatnonzero(lengths != expected)
    if len(wrong):
        ids = frame[ID].iloc[wrong[:10]].tolist() if ID in frame.columns else wrong[:10].tolist()
        raise InputError(f"column {name!r}: {len(wrong)} rows do not have length {expected}, e.g. ids {ids}")
    try:
        return np.stack([np.asarray(v, dtype=np.float32) for v in values]) if len(values) else np.zeros((0, 0), np.float32)
    except (TypeError, ValueError) as err:
        raise InputError(f"column {name!r} holds non-numeric values: {err}") from err


def _read_representation(path, features: str | None, columns) -> pd.DataFrame:
    """The table at ``path``: all columns, or for Parquet only ``id_str``, the representation and ``columns``."""
    names = _parquet_names(path) if columns is not None else None
    if names is None:
        return read_table(path)
    wanted = {ID, *representation_columns(names, features), *columns}
    return read_table(path, columns=[c for c in names if c in wanted])


def _read_lean(path, features: str | None) -> tuple[pd.DataFrame, np.ndarray] | None:
    """A Parquet table whose representation is in columns, read with one copy of the representation:
    ``(table without the representation, X)``; None where this does not apply (another format, a list
    column, hive partitions, no ``id_str``), and the caller reads the whole table.

    Why not ``read_table`` then :func:`feature_matrix`: pyarrow's table, its pandas copy and the array
    taken from it hold the representation two or three times at once (1.8 GB for 1M x 128 float32,
    ~15 GB for 8.7M, before the search starts). Here each file is read in batches of rows, straight
    into a preallocated float32 array, and only the other (small) columns become the table.
    """
    import pyarrow as pa
    import pyarrow.dataset as pds
    import pyarrow.parquet as pq

    if not lean_readable(path):
        return None
    dataset = pq.ParquetDataset(path)
    fragments, names = list(dataset.fragments), list(dataset.schema.names)
    feats = _representation_prefix_columns(names, features)
    hive = any(not f.partition_expression.equals(pds.scalar(True)) for f in fragments)  # plain reader adds them
    if not feats or ID not in names or not fragments or hive:
        return None
    bad = [c for c in feats if not pa_numeric(dataset.schema.field(c).type)]
    if bad:
        raise InputError(f"non-numeric feature columns: {', '.join(map(str, bad[:10]))}")
    others = [c for c in names if c not in set(feats)]
    X = np.empty((sum(f.count_rows() for f in fragments), len(feats)), np.float32)  # a MemoryError says so
    start, rest, schema = 0, [], dataset.schema  # the folder's schema: parts with other types or fewer columns
    try:
        for fragment in fragments:
            for batch in fragment.to_batches(schema=schema, columns=names, use_threads=False, batch_size=65536):
                for j, col in enumerate(feats):
                    X[start:start + batch.num_rows, j] = batch.column(col).to_numpy(zero_copy_only=False)
                rest.append(pa.RecordBatch.from_arrays([batch.column(c) for c in others], names=others))
                start += batch.num_rows
        frame = pa.Table.from_batches(rest, schema=pa.schema([schema.field(c) for c in others],
                                                             metadata=schema.metadata)).to_pandas()  # pandas dtypes, index
    except MemoryError:
        raise
    except Exception as err:  # pyarrow raises many kinds; say which file
        raise InputError(f"{path}: cannot read as parquet: {err}") from err
    del rest
    pa.default_memory_pool().release_unused()  # the decoded row groups (0.4 GB for 125k-row groups) go back now
    if ID in frame.columns:  # else an id kept as the pandas index: check_ids names it, as for the plain reader
        frame[ID] = frame[ID].astype(str)
    return frame, X


def _representation_prefix_columns(names, features: str | None) -> list:
    """The representation's columns in index order (``feat_*``, or ``features`` as a prefix); [] for a list column."""
    if features is None:
        return feature_columns(pd.DataFrame(columns=names))
    if features in names:
        return []
    return sorted((c for c in names if str(c).startswith(features) and str(c)[len(features):].isdigit()),
                  key=lambda c: int(str(c)[len(features):]))


def pa_numeric(kind) -> bool:
    """True for an Arrow integer or floating type (what :func:`feature_matrix` takes as numeric)."""
    import pyarrow.types as pat

    return pat.is_integer(kind) or pat.is_floating(kind)


def lean_readable(path) -> bool:
    """Whether ``path`` is a Parquet table (file, or folder of ``*.parquet`` parts) whose schema can be read:
    what :func:`representation_table` may read with ``lean=True``; other tables are read whole."""
    path = Path(path)
    try:
        if not path.exists() or _kind(path) != "parquet":
            return False
        if path.is_dir() and not any(p.suffix.lower() in _PARQUET for p in path.rglob("*") if p.is_file()):
            return False
    except InputError:
        return False
    return _parquet_names(path) is not None


def representation_columns(names, features: str | None) -> list:
    """The columns of ``names`` that may hold the representation :func:`~raregal.inputs.tables.feature_matrix` takes."""
    names = list(names)
    if features is None:
        return feature_columns(pd.DataFrame(columns=names)) or [c for c in ("features", "representation")
                                                                if c in names]
    return [c for c in names if c == features or (str(c).startswith(features) and str(c)[len(features):].isdigit())]


def _parquet_names(path) -> list[str] | None:
    """Column names of a Parquet table (file or folder of parts) without reading it; None for other formats."""
    try:
        import pyarrow.parquet as pq

        return list(pq.ParquetDataset(path).schema.names)
    except Exception:  # not Parquet: read the whole table
        return None


def representation_table(source, features: str | None = None, *, columns=None, where: str | None = None,
                         lean: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """The one loader of a representation table, for search, similar, guide and evaluate: ``(table, X)``.

    ``source``: a table file (Parquet, CSV, FITS, .npy/.npz; for Parquet only ``id_str``, the
    representation and ``columns`` are read, all columns when ``columns`` is None) or a DataFrame.
    Checked: it has rows; ``id_str`` is present, filled and unique (made str); ``ra``/``dec`` when
    present (:func:`raregal.inputs.sky.with_coordinates`: bad rows named, set to NaN); the
    representation (:func:`feature_matrix` with ``features``) is not empty. ``X`` is (N, D) float32;
    non-finite rows are left to the caller (a search may drop them, similar leaves them out).
    ``where`` names the table in errors (default: the path, or "the table"). ``lean`` (a Parquet
    path with the representation in columns, e.g. ``feat_*``): the representation is read straight
    into ``X`` and left out of ``table``, so it is held once (the search's way, :func:`_read_lean`).
    """
    from raregal.inputs import sky

    X = None
    if isinstance(source, pd.DataFrame):
        frame, where = source, where or "the table"
    else:
        where = where or str(source)
        lean_read = _read_lean(source, features) if lean and columns is None and Path(source).exists() else None
        frame, X = lean_read if lean_read is not None else (_read_representation(source, features, columns), None)
    if len(frame) == 0:
        raise InputError(f"{where}: the table has no rows (columns: {', '.join(map(str, frame.columns[:10]))})")
    if ID in frame.columns:  # mixed types ("1" and 1) become one kind before the duplicate check
        frame = frame.assign(**{ID: frame[ID].where(frame[ID].isna(), frame[ID].astype(str))})
    check_ids(frame, where)
    frame = sky.with_coordinates(frame, where)
    X = feature_matrix(frame, features) if X is None else X
    if X.shape[1] == 0 or len(X) == 0:
        raise InputError(f"{where}: the representation is empty (shape {X.shape})")
    return frame, X
