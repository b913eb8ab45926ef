"""Catalogs with the images inside: Parquet shards whose ``image`` column holds each galaxy's image file.

The Galaxy Zoo datasets are published as Parquet shards in the layout of the Hugging Face
``datasets`` Image feature: a struct column ``image`` of ``bytes`` (the JPEG, PNG or FITS file)
and ``path`` (its file name), beside ``id_str``, ``ra``, ``dec`` and the vote columns (the
schema metadata key ``huggingface`` records the features). raregal reads such a catalog, one
Parquet file or a folder of shards, wherever it reads one with ``file_loc``, and never unpacks
the images to disk:

* :func:`read_embedded_catalog` reads every column but ``image`` and records where each row's
  image is: ``image_shard`` (the shard's absolute path, a categorical column) and ``image_row``
  (the row within the shard). These two columns travel with the galaxy, into ``raregal embed``'s
  output, so reports, the explorer and ``raregal similar`` find the pictures again.
* :class:`EmbeddedImages` reads the images of chosen rows on demand, one Parquet row group at a
  time, keeping the last :data:`CACHED_ROW_GROUPS` groups, and checks that the row still holds
  the same ``id_str``: a shard rewritten since gives an error for that galaxy, never another
  galaxy's picture. A null image (or null ``bytes``) is an error for that row only, so embedding
  skips and lists it by id.

Row groups are Parquet's unit of reading. Shards written by ``datasets`` hold a few hundred rows
per group, so a report showing 36 galaxies reads 36 small groups. A shard written as one huge
group is read whole whenever one of its images is asked for; for training, which reads in random
order, rewrite such shards with smaller groups (``pyarrow.parquet.write_table(t, f, row_group_size=500)``).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd

from raregal.errors import InputError
from raregal.images.decode import EncodedImage

ID = "id_str"
FILE_LOC = "file_loc"
#: The column holding the images, and the two columns raregal writes instead of ``file_loc``.
IMAGE, SHARD, ROW = "image", "image_shard", "image_row"
#: Row groups kept in memory per reader (per DataLoader worker).
CACHED_ROW_GROUPS = 4
_PARQUET = (".parquet", ".pq", ".parq")


def parquet_files(path: str | os.PathLike) -> list[Path]:
    """The Parquet file ``path``, or the Parquet files under the folder ``path`` in name order."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _PARQUET
                      and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts))
    return [path] if path.suffix.lower() in _PARQUET else []


def has_image_column(path: str | os.PathLike) -> bool:
    """True when ``path`` is a Parquet catalog (file or folder) whose first shard has an ``image`` column.

    Reads only the schema.
    """
    import pyarrow.parquet as pq

    files = parquet_files(path) if Path(path).exists() else []
    if not files:
        return False
    try:
        return IMAGE in pq.read_schema(files[0]).names
    except Exception:  # not Parquet after all: read_table says what is wrong
        return False


def _check_schema(schema, shard: Path) -> None:
    """Raise unless ``schema`` has an ``image`` column of image files (and no ``file_loc``)."""
    import pyarrow as pa

    if IMAGE not in schema.names:
        raise InputError(f"{shard}: this shard has no '{IMAGE}' column, unlike the catalog's first shard")
    if FILE_LOC in schema.names:
        raise InputError(f"{shard}: the catalog has both '{IMAGE}' (images inside) and '{FILE_LOC}' (image files); "
                         f"raregal cannot tell which is each galaxy's picture. Drop one of the two columns")
    kind = schema.field(IMAGE).type
    binary = (pa.types.is_binary(kind) or pa.types.is_large_binary(kind))
    if pa.types.is_struct(kind):
        names = [kind.field(i).name for i in range(kind.num_fields)]
        child = kind.field("bytes").type if "bytes" in names else None
        binary = child is not None and (pa.types.is_binary(child) or pa.types.is_large_binary(child))
    if not binary:
        raise InputError(f"{shard}: column '{IMAGE}' is {kind}; expected the images' bytes, as the Hugging Face "
                         "datasets Image feature stores them (struct<bytes: binary, path: string>)")


def read_embedded_catalog(path: str | os.PathLike) -> pd.DataFrame:
    """Read a catalog with the images inside without their bytes: every column but ``image``, plus
    ``image_shard`` (categorical, absolute shard path) and ``image_row`` (int64, row in the shard).

    ``path``: one Parquet file or a folder of shards (read in name order; files and folders whose
    names start with ``.`` or ``_`` are left out, as pyarrow does). Raises InputError naming the
    shard when one has no ``image`` column, has ``file_loc`` too, or cannot be read.
    """
    import pyarrow.parquet as pq

    files = parquet_files(path)
    if not files:
        raise InputError(f"{path}: no Parquet shards found")
    frames, codes = [], []
    for code, shard in enumerate(files):
        try:
            schema = pq.read_schema(shard)
            _check_schema(schema, shard)
            table = pq.read_table(shard, columns=[n for n in schema.names if n != IMAGE])
        except InputError:
            raise
        except Exception as err:  # pyarrow raises many kinds for damaged files
            raise InputError(f"{shard}: cannot read as Parquet: {err}") from err
        frames.append(table.to_pandas())
        codes.append(np.full(table.num_rows, code, np.int32))
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    frame[SHARD] = pd.Categorical.from_codes(np.concatenate(codes), categories=[str(f.resolve()) for f in files])
    frame[ROW] = np.concatenate([np.arange(len(f), dtype=np.int64) for f in frames])
    return frame


class EmbeddedImages:
    """The images of some catalog rows, read from their Parquet shards on demand.

    A sequence: ``images[i]`` is the :class:`~raregal.images.decode.EncodedImage` of row ``i`` (read then;
    InputError naming the id when it cannot be read), ``images[positions]`` (an array or slice)
    the subset, ``len(images)`` the number of rows. Safe to share between threads; pickles
    without its cache, so each DataLoader worker keeps its own.

    ``shards``: shard paths; ``codes`` (N,): each row's shard index (-1: no image known);
    ``rows`` (N,): row within the shard; ``ids`` (N,): the id the row must hold.
    """

    def __init__(self, shards, codes, rows, ids):
        self.shards = [str(s) for s in shards]
        self.codes = np.asarray(codes, dtype=np.int64)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.ids = np.asarray(ids, dtype=object)
        self._reset()

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "EmbeddedImages":
        """The images of the rows of ``frame`` (``id_str``, ``image_shard``, ``image_row``)."""
        codes, shards = pd.factorize(frame[SHARD].astype(object), use_na_sentinel=True)
        rows = pd.to_numeric(frame[ROW], errors="coerce").fillna(-1).to_numpy(np.int64)
        return cls(list(shards), np.where(rows < 0, -1, codes), rows, frame[ID].astype(str).to_numpy())

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._files: dict[int, tuple] = {}
        self._groups: OrderedDict = OrderedDict()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k in ("shards", "codes", "rows", "ids")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)):
            return self.read(int(i))
        i = np.arange(len(self))[i] if isinstance(i, slice) else np.asarray(i)
        return EmbeddedImages(self.shards, self.codes[i], self.rows[i], self.ids[i])

    def __iter__(self):
        return (self.read(i) for i in range(len(self)))

    def name(self, i: int) -> str:
        """How messages name row ``i``'s image: ``shard.parquet row 12 (id J1234)``."""
        code = self.codes[i]
        where = f"{Path(self.shards[code]).name} row {self.rows[i]}" if code >= 0 else "no catalog row"
        return f"{where} (id {self.ids[i]})"

    def read(self, i: int) -> EncodedImage:
        """The image of row ``i``; raises InputError naming it when it cannot be read."""
        code, row, want = int(self.codes[i]), int(self.rows[i]), str(self.ids[i])
        if code < 0:
            raise InputError(f"id {want}: no image (the galaxy is not in the catalog that holds the images)")
        if self._pid != os.getpid():  # a forked DataLoader worker: open its own files
            self._reset()
        with self._lock:
            ids, data, paths, start = self._group(code, row)
            k = row - start
            found, blob, hint = ids[k].as_py(), data[k].as_py(), paths[k].as_py() if paths is not None else None
        if str(found) != want:
            raise InputError(f"{self.name(i)}: that row of {self.shards[code]} holds id {found!r}, not {want!r}: "
                             "the shard changed since the catalog was read; give the catalog again")
        if blob is None:
            raise InputError(f"{self.name(i)}: the catalog's image is null (no bytes)"
                             + (f"; it names only a file, {hint!r}" if hint else ""))
        return EncodedImage(blob, self.name(i), hint or "")

    def _group(self, code: int, row: int) -> tuple:
        """(ids, image bytes, names or None, first row) of the row group of shard ``code`` holding ``row``.

        The first three are pyarrow arrays (bytes null where the image is); the group is cached.
        """
        pf, starts = self._open(code)
        g = int(np.searchsorted(starts, row, side="right")) - 1
        if not 0 <= row < starts[-1] or g < 0:
            raise InputError(f"{self.shards[code]}: the shard has {starts[-1]} rows, no row {row}: "
                             "it changed since the catalog was read; give the catalog again")
        key = (code, g)
        if key not in self._groups:
            table = pf.read_row_group(g, columns=[ID, IMAGE])
            self._groups[key] = (*_unpack(table, self.shards[code]), int(starts[g]))
            while len(self._groups) > CACHED_ROW_GROUPS:
                self._groups.popitem(last=False)
        self._groups.move_to_end(key)
        return self._groups[key]

    def _open(self, code: int):
        if code not in self._files:
            import pyarrow.parquet as pq

            shard = self.shards[code]
            if not Path(shard).is_file():
                raise InputError(f"{shard}: the catalog shard holding the images is gone; give the catalog with "
                                 "--catalog where it is now")
            try:
                pf = pq.ParquetFile(shard)
            except Exception as err:
                raise InputError(f"{shard}: cannot read as Parquet: {err}") from err
            sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
            self._files[code] = (pf, np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]))
        return self._files[code]


def _unpack(table, shard: str) -> tuple:
    """A row group's ``id_str``, image bytes (null where the image or its bytes are) and ``path`` (or None) arrays."""
    import pyarrow as pa

    ids = table.column(ID).combine_chunks()
    col = table.column(IMAGE).combine_chunks()
    if not pa.types.is_struct(col.type):
        return ids, col, None
    names = [col.type.field(i).name for i in range(col.type.num_fields)]
    children = dict(zip(names, col.flatten()))  # flatten: a null struct gives null children
    return ids, children["bytes"], children.get("path")
