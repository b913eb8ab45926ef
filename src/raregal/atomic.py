"""Atomic writes: a file appears whole at its final path, or not at all.

Each writer renders into a temporary file in the destination folder and then renames it
over the destination with :func:`os.replace` (atomic on POSIX and Windows within a file
system). An interrupted run therefore never leaves a half-written artifact behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def umask() -> int:
    """The process's umask (read without changing it for longer than a moment)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary name keeps ``path``'s suffix (or ``suffix``) so libraries that infer the
    format from the extension (matplotlib, astropy) still do. On error it is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=suffix if suffix is not None else path.suffix
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files; give the usual umask-based mode instead
            os.chmod(tmp_path, 0o666 & ~umask())
        os.replace(tmp_path, path)
    except BaseException as err:
        tmp_path.unlink(missing_ok=True)
        if isinstance(err, OSError) and (err.filename is None or os.fsdecode(err.filename) == str(tmp_path)):
            err.filename = str(path)  # say which file failed, by the name the user knows
        if isinstance(err, OSError):
            err.raregal_writing = True  # raregal.errors.write_failure: it was a write
        raise


#: The longest file name :func:`safe_file_name` makes (file systems allow 255 bytes).
NAME_LIMIT = 100


def safe_file_name(text: str, limit: int = NAME_LIMIT) -> str:
    """A file name made from a user's string (a galaxy id, a class name): every character but ASCII
    letters, digits, ``_``, ``.`` and ``-`` becomes ``_``, no leading dot, and a name longer than
    ``limit`` is cut and ends in a hash of the whole string, so two long ids still get two names."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(text)).lstrip(".") or "_"
    if len(name) > limit:
        digest = hashlib.sha1(str(text).encode("utf-8", "surrogatepass")).hexdigest()[:12]
        name = f"{name[:limit - 13]}-{digest}"
    return name


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, paths: the things scientific code puts in summaries
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (numpy values converted) atomically."""
    return write_text(path, json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n")


def write_toml(path: str | os.PathLike, obj: dict) -> Path:
    """Write a dict as TOML atomically (``None`` values are left out: TOML has no null)."""
    import tomli_w

    def drop_none(d):
        return {k: drop_none(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}

    return write_text(path, tomli_w.dumps(drop_none(obj)))


def write_parquet(path: str | os.PathLike, table) -> Path:
    """Write a pandas DataFrame or pyarrow Table to Parquet atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)
