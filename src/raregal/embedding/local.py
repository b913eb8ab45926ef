"""Embed every image of a catalog: representation plus predicted Galaxy Zoo vote fractions.

Output (``REPS.parquet``, what ``raregal search`` reads): one row per readable image, in catalog
order, with ``id_str``, where the image is (``file_loc``, absolute; for a catalog with the images
inside, ``image_shard`` and ``image_row``, see :mod:`raregal.inputs.shards`), ``feat_0 … feat_{D-1}``
(float32 representation), ``<answer>_fraction`` for every answer of the model's Galaxy Zoo tree
(``model.schema``: 34 columns such as ``smooth-or-featured_smooth_fraction`` for GZ DESI, 98 such as
``smooth-or-featured-dr8_smooth_fraction`` for GZ DECaLS all campaigns, the names of Zoobot's own
prediction tables; float32, expected vote fraction within each question; NaN for an encoder without
a Dirichlet head) and the carried catalog columns: ``ra`` and ``dec`` whenever the catalog has them,
and those asked for.

The work is cut into chunks of rows. Each finished chunk is written at once to
``REPS.parquet.parts/part-NNNNN.parquet`` (atomically), so a run that is interrupted or killed
resumes from the first unfinished chunk; at the end the parts are merged into ``REPS.parquet``
and the parts folder is removed. Images that are missing or unreadable are skipped and listed,
with the reason, in ``REPS.skipped.csv``; ``REPS.embed.json`` records counts and timings
(:func:`write_summary`, the one summary of both this path and the Dask one).

What raregal writes into is its own or new: the parts folder (here, and the Dask output folder of
:mod:`raregal.embedding.on_dask`) is recognised by its manifest and may hold nothing else
(:func:`check_parts_folder`), and a part is trusted on a resume only when it reads back whole
(:func:`part_done`); :func:`check_output` checks all of it, for both paths, before any model is loaded.

:func:`embed_chunk` is the per-chunk work as a plain function (rows in, table out) so that it
can also run inside a Dask worker (:mod:`raregal.embedding.on_dask`); :func:`load_model` gives the model.
Inference runs through :func:`raregal.encoder.runtime.make_runner`: ONNX Runtime on CPU when it
is installed, PyTorch with ``channels_last`` (and bf16 autocast on CUDA) otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from raregal.inputs import gz_trees
from raregal.atomic import atomic_path, write_json, write_parquet, write_text
from raregal.inputs.tables import image_sources, source_columns
from raregal.inputs.shards import ROW, SHARD
from raregal.errors import InputError
from raregal.runs.folder import check_writable
from raregal.validation import Integer, check_params
from raregal.encoder.loading import load_model
from raregal.encoder.runtime import make_runner
from raregal.images.dataset import ImageDataset, collate_images, eval_transform
from raregal.workers import default_workers

log = logging.getLogger("raregal")

__all__ = ["check_output", "embed_catalog", "embed_chunk", "load_model", "parts_dir", "skipped_path", "summary_path",
           "write_summary"]

#: Catalog columns every embedding carries when the catalog has them (sky position; any capitalisation).
ALWAYS_CARRIED = ("ra", "dec")
#: Fraction columns of every known tree: embed writes those of its model's, so none may be carried.
_ALL_FRACTIONS = frozenset(f for tree in gz_trees.SCHEMAS.values() for f in tree.fractions)
#: The manifest that marks a parts folder as raregal embed's: ``REPS.parquet.parts/`` of a local run, and the
#: output folder of a Dask run (its bookkeeping starts with ``_`` so that Parquet readers skip it).
MANIFEST = "manifest.json"
DASK_MANIFEST = "_manifest.json"
#: Every name raregal embed writes into a parts folder (either kind), also as the temporary file of an atomic
#: write (``.part-00002.parquet.x1y2.parquet``, :func:`raregal.atomic.atomic_path`); ``_embed.json`` is the
#: summary an older raregal kept inside a Dask folder. Anything else in the folder is a user's.
_OWN_PART_FILE = re.compile(r"\.?(_?manifest\.json|part-\d{5}\.parquet|_?part-\d{5}\.skipped\.csv|_skipped\.csv"
                            r"|_embed\.json)(\..+)?")


def parts_dir(out: str | os.PathLike) -> Path:
    """Folder of the finished chunks of an embedding run writing to ``out``."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


def skipped_path(out: str | os.PathLike) -> Path:
    """The CSV listing the images an embedding run into ``out`` skipped (id_str, where the image is, reason)."""
    out = Path(out)
    return out.with_name(out.with_suffix("").name + ".skipped.csv")


def _run(runner, loader) -> tuple[list[np.ndarray], list, list, list]:
    """Yield per batch: (row positions, representation (B, D), fractions (B, A) or None, failed [(pos, reason)]).

    ``runner`` is a :func:`~raregal.encoder.runtime.make_runner` callable (images -> NumPy z, fractions).
    """
    for batch in loader:
        index = batch["index"].numpy()
        if len(index):
            z, frac = runner(batch["image"])
        else:
            z, frac = np.zeros((0, runner.representation_dim), np.float32), None
        yield index, z, frac, batch["failed"]


def device_of(model) -> torch.device:
    """The device a model's parameters live on."""
    return next(model.parameters()).device


def _frame(rows: pd.DataFrame, index: np.ndarray, z: np.ndarray, frac: np.ndarray | None,
           carry: list[str], fractions: list[str]) -> pd.DataFrame:
    """Assemble the output table for ``rows`` (positions ``index`` were read; z (n, D), frac (n, A)).

    ``fractions``: the A fraction column names, in the head's order (the model's ``gz_trees.fractions``).
    """
    picked = rows.iloc[index]
    data = {"id_str": picked["id_str"].astype(str).to_numpy(), **_where(picked)}
    z = z.astype(np.float32, copy=False)
    for j in range(z.shape[1]):
        data[f"feat_{j}"] = z[:, j]
    frac = np.full((len(index), len(fractions)), np.nan, np.float32) if frac is None else frac.astype(np.float32)
    for j, name in enumerate(fractions):
        data[name] = frac[:, j]
    for col in carry:
        data[col] = picked[col].to_numpy()
    return pd.DataFrame(data)


def _where(picked: pd.DataFrame) -> dict:
    """Where the images of ``picked`` are, as output columns: file_loc, or image_shard (categorical) + image_row."""
    cols = source_columns(picked)
    if cols == [SHARD, ROW]:
        return {SHARD: pd.Categorical(picked[SHARD].astype(object).to_numpy()),
                ROW: picked[ROW].to_numpy(np.int64)}
    return {"file_loc": picked["file_loc"].astype(str).to_numpy()}


def _stack(results, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list]:
    index = np.concatenate([r[0] for r in results]) if results else np.zeros(0, int)
    z = np.concatenate([r[1] for r in results]) if results else np.zeros((0, dim), np.float32)
    fracs = [r[2] for r in results if r[2] is not None]
    frac = np.concatenate(fracs) if fracs else None
    failed = [f for r in results for f in r[3]]
    return index, z, frac, failed


def embed_chunk(model, rows: pd.DataFrame, batch_size: int = 64, num_workers: int = 0,
                carry: list[str] | tuple = (), backend: str = "auto", precision: str = "auto",
                runner=None, resize_uint8: bool | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Embed the images of ``rows`` with ``model``: ``id_str`` and absolute ``file_loc``, or ``image_shard``/``image_row``.

    ``backend``/``precision`` choose the inference path (:func:`~raregal.encoder.runtime.make_runner`);
    a ready ``runner`` from it may be passed instead, so repeated calls reuse one ONNX session.
    ``resize_uint8`` (default: on CUDA only) resizes JPEG/PNG pixels before the float conversion
    (:class:`~raregal.images.dataset.ImageDataset`), which doubles decoding throughput.

    Returns (table, skipped): the representation table described in the module docstring for
    the readable rows, in the order of ``rows``; and a DataFrame ``id_str``, where the image is
    (``file_loc`` or ``image_shard``, ``image_row``), ``reason`` of the rows whose image could not
    be read. Never raises for a bad image.
    """
    rows = rows.reset_index(drop=True)
    device = next(model.parameters()).device
    runner = runner or make_runner(model, backend, precision)
    dataset = ImageDataset(image_sources(rows), eval_transform(model.config.input_size), model.config.channels,
                           resize_uint8=device.type == "cuda" if resize_uint8 is None else resize_uint8)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=collate_images, pin_memory=device.type == "cuda",
                                         persistent_workers=False)
    index, z, frac, failed = _stack(list(_run(runner, loader)), model.representation_dim)
    return _frame(rows, index, z, frac, list(carry), model.schema.fractions), _skipped_frame(rows, failed)


def _skipped_frame(rows: pd.DataFrame, failed: list) -> pd.DataFrame:
    """``id_str``, where the image is, and ``reason`` for each failed (position, reason) of ``rows``."""
    picked = rows.iloc[[i for i, _ in failed]]
    return pd.DataFrame({"id_str": picked["id_str"].astype(str).to_numpy(),
                         **{c: picked[c].astype(str).to_numpy() for c in source_columns(rows)},
                         "reason": [r for _, r in failed]})


def _fingerprint(model, catalog: pd.DataFrame, chunk_size: int, carry: list[str]) -> str:
    """Hash of everything that determines the parts, so a resume never mixes two different runs."""
    h = hashlib.sha256()
    h.update(json.dumps([model.config.to_dict(), chunk_size, carry], sort_keys=True).encode())
    for tensor in model.state_dict().values():
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    where = catalog[["id_str", *source_columns(catalog)]].astype(str)
    h.update(pd.util.hash_pandas_object(where, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _check_carry(catalog: pd.DataFrame, carry) -> list[str]:
    """The columns to carry: those asked for (checked), then :data:`ALWAYS_CARRIED` ones the catalog has."""
    carry = list(dict.fromkeys(carry or []))
    missing = [c for c in carry if c not in catalog.columns]
    if missing:
        raise InputError(f"--carry: catalog has no column(s) {', '.join(missing)}")
    reserved = [c for c in carry if c in ("id_str", "file_loc", SHARD, ROW) or c.startswith("feat_")
                or c in _ALL_FRACTIONS]
    if reserved:
        raise InputError(f"--carry: {', '.join(reserved)} are written by embed itself and cannot be carried")
    from raregal.inputs.sky import find_columns  # ra/dec, or RA/DEC in any case (raregal.inputs.sky renames them where they enter)

    return carry + [c for c in find_columns(catalog) if c is not None and c not in carry]


def summary_path(out: str | os.PathLike) -> Path:
    """The JSON an embedding run into ``out`` writes beside it (settings, counts, speed): ``REPS.embed.json``
    beside ``REPS.parquet``, and beside the folder of a Dask run (``reps/`` -> ``reps.embed.json``)."""
    out = Path(out)
    return out.with_name(out.with_suffix("").name + ".embed.json")


#: The keys of every embed summary (:func:`write_summary`), local or on Dask, in their order.
SUMMARY_KEYS = ("output", "engine", "model", "arch", "representation_dim", "input_size", "has_fractions", "schema",
                "n_input", "n_embedded", "n_skipped", "skipped_report", "chunk_size", "chunks", "chunks_resumed",
                "seconds", "images_per_s", "batch_size", "workers", "n_workers", "worker_pids", "device", "backend",
                "precision", "carry")


def write_summary(out: str | os.PathLike, model, *, engine: str, model_name: str, n_input: int, n_embedded: int,
                  n_skipped: int, skipped_report: str | os.PathLike, chunk_size: int, chunks: int,
                  chunks_resumed: int, seconds: float, n_done: int, batch_size: int, workers: int | None,
                  n_workers: int, worker_pids: list, device: str, backend: str | None, precision: str | None,
                  carry: list) -> dict:
    """Write the summary of an embedding run into ``out`` to :func:`summary_path` and return it.

    The one format of both paths (``engine`` ``"local"`` or ``"dask"``), keys :data:`SUMMARY_KEYS`:
    what was embedded with what (``model`` as given, ``arch``, ``representation_dim``, ``input_size``,
    ``has_fractions``, ``schema``), counts (``n_input``, ``n_embedded``, ``n_skipped`` listed in
    ``skipped_report``), the unit of resumption (``chunk_size`` rows, ``chunks``, ``chunks_resumed``:
    finished before this run; a Dask run's partitions), speed (``seconds``, ``images_per_s`` of the
    ``n_done`` images this run embedded), and how (``batch_size``; ``workers``: image-decoding
    processes per model; ``n_workers`` model processes, ``worker_pids`` those that did work;
    ``device``, ``backend``, ``precision``; ``carry``).
    """
    has_head = getattr(model, "head", None) is not None
    summary = {"output": str(Path(out).resolve()), "engine": engine, "model": str(model_name),
               "arch": model.config.arch, "representation_dim": model.representation_dim,
               "input_size": model.config.input_size, "has_fractions": has_head,
               "schema": model.schema.name if has_head else None, "n_input": int(n_input),
               "n_embedded": int(n_embedded), "n_skipped": int(n_skipped),
               "skipped_report": str(Path(skipped_report).resolve()), "chunk_size": int(chunk_size),
               "chunks": int(chunks), "chunks_resumed": int(chunks_resumed), "seconds": round(seconds, 3),
               "images_per_s": round(n_done / seconds, 2) if seconds > 0 and n_done else None,
               "batch_size": batch_size, "workers": workers, "n_workers": int(n_workers),
               "worker_pids": sorted(int(p) for p in worker_pids), "device": str(device), "backend": backend,
               "precision": precision, "carry": list(carry)}
    assert tuple(summary) == SUMMARY_KEYS
    write_json(summary_path(out), summary)
    return summary


def _is_summary(path: Path) -> bool:
    """Whether ``path`` is a summary raregal embed wrote (this raregal's or an earlier one's)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(found, dict) and {"n_embedded", "representation_dim"} <= set(found)


def _output_of(summary: Path) -> Path | None:
    """The output a summary of raregal embed names (None when it is none, or names none)."""
    try:
        found = json.loads(summary.read_text()).get("output") if _is_summary(summary) else None
    except (OSError, ValueError, AttributeError, UnicodeDecodeError):
        return None
    return Path(found) if isinstance(found, str) and found else None


def check_output(out: str | os.PathLike, *, overwrite: bool = False, batch_size: int = 64, chunk_size: int = 4096,
                 inputs: tuple = (), dask: bool = False) -> Path:
    """Check, before any model is loaded, that an embedding may be written to ``out``; return it as a Path.

    ``out`` must be a new file, or with ``overwrite`` an earlier output of ``raregal embed``
    (recognised by its ``.embed.json`` beside it); never a folder, one of ``inputs`` (the
    catalog), or a file raregal did not write. Its parts folder must be new, empty or raregal's
    (:func:`check_parts_folder`). With ``dask`` (:func:`raregal.embedding.on_dask.embed_catalog_dask`)
    ``out`` is the folder of parts itself, and ``chunk_size`` is the partition size. Either way the
    summary beside it (:func:`summary_path`) must be new or raregal's. Errors name the parameter.
    """
    out = Path(out)
    check_params({"batch_size": batch_size, "partition_size" if dask else "chunk_size": chunk_size},
                 {"batch_size": Integer(1), "partition_size": Integer(1), "chunk_size": Integer(1)})
    if any(Path(src).exists() and out.resolve() == Path(src).resolve() for src in inputs):
        raise InputError(f"out {out}: is the input catalog; write the representations to another file", param="out")
    if dask:
        if out.exists() and not out.is_dir():
            raise InputError(f"out {out}: is a file; an embedding on Dask writes a folder of Parquet parts and "
                             "raregal never replaces a file. Give a new folder", param="out")
        check_parts_folder(out, DASK_MANIFEST)
    else:
        if out.is_dir():
            raise InputError(f"out {out}: is a folder; give the Parquet file to write (e.g. {out / 'reps.parquet'})",
                             param="out")
        if out.exists() and not overwrite:
            raise InputError(f"out {out}: exists; pass overwrite to replace it", param=("out", "overwrite"))
        if out.exists() and not _is_summary(summary_path(out)):
            raise InputError(f"out {out}: exists and was not written by `raregal embed` (no {summary_path(out).name} "
                             "beside it); raregal never replaces it. Give a new file name", param="out")
    # written beside the output: a user's file of either name is never replaced. The list of skipped
    # images is raregal's when its summary is, or while its parts are (a run killed between the two)
    other = _output_of(summary_path(out))
    if other is not None and other != out.resolve() and (other.exists() or other.is_symlink()):
        raise InputError(f"{summary_path(out)}: is the summary of another embedding ({other}), which raregal never "
                         "replaces; give another --out", param="out")  # reps/ (Dask) and reps.parquet share it
    summary_ours = _is_summary(summary_path(out))
    beside = {summary_path(out): ("summary", summary_ours)}
    if not dask:
        beside[skipped_path(out)] = ("list of skipped images", summary_ours or _has_manifest(parts_dir(out), MANIFEST))
    for path, (what, ours) in beside.items():
        if (path.exists() or path.is_symlink()) and not (ours and path.is_file() and not path.is_symlink()):
            raise InputError(f"{path}: exists, and raregal did not write it; raregal embed writes its {what} "
                             "there and never replaces a user's file. Move it, or give another --out", param="out")
    check_writable(out, "out")  # tried for real: /proc, a read-only mount, root's permission bits
    if not dask:
        check_parts_folder(parts_dir(out), MANIFEST)
    return out


def _has_manifest(pdir: Path, manifest: str) -> bool:
    """Whether ``pdir`` holds a readable ``manifest`` of raregal embed (with the run's fingerprint)."""
    try:
        return isinstance(json.loads((pdir / manifest).read_text()).get("fingerprint"), str)
    except (OSError, ValueError, TypeError, AttributeError, UnicodeDecodeError):
        return False


def check_parts_folder(pdir: str | os.PathLike, manifest: str = MANIFEST) -> None:
    """Refuse a parts folder that is not raregal's, naming it: a file, a folder with files but no
    ``manifest`` of ``raregal embed``, or one of raregal's that a user's file has joined (raregal
    deletes or replaces the folder's files on a rerun, so it may hold nothing but its own).

    ``manifest``: :data:`MANIFEST` for ``REPS.parquet.parts/``, :data:`DASK_MANIFEST` for a Dask output folder.
    """
    pdir = Path(pdir)
    if (pdir.exists() or pdir.is_symlink()) and not pdir.is_dir():
        raise InputError(f"{pdir}: is a file; raregal embed keeps its finished chunks there and never replaces "
                         "a file it did not write. Move it, or give another --out", param="out")
    if not pdir.is_dir() or not any(pdir.iterdir()):
        return
    if not _has_manifest(pdir, manifest):
        raise InputError(f"{pdir}: not a raregal embedding directory (no {manifest} of raregal embed): it holds "
                         "files raregal did not write, and raregal never deletes them. Move it, or give another --out",
                         param="out")
    foreign = sorted(p.name for p in pdir.iterdir() if p.is_dir() or not _OWN_PART_FILE.fullmatch(p.name))
    if foreign:
        raise InputError(f"{pdir}: the folder of raregal embed's parts also holds {len(foreign)} file(s) raregal "
                         f"did not write ({', '.join(foreign[:3])}); raregal never deletes them. Move them, or give "
                         "another --out", param="out")


def _merge(parts: list[Path], out: Path) -> int:
    """Stream the part files into one Parquet file at ``out`` (atomically); returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    unified = pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")
    n = 0
    with atomic_path(out) as tmp:
        with pq.ParquetWriter(tmp, unified) as writer:
            for p in parts:
                table = pq.read_table(p).cast(unified)
                writer.write_table(table)
                n += table.num_rows
    return n


def embed_catalog(catalog: pd.DataFrame, model, out: str | os.PathLike, chunk_size: int = 4096,
                  batch_size: int = 64, workers: int | None = None, carry=(), overwrite: bool = False,
                  progress: bool = True, model_name: str = "", backend: str = "auto",
                  precision: str = "auto") -> dict:
    """Embed every row of ``catalog`` into ``out`` (Parquet), resuming from finished chunks.

    Parameters
    ----------
    catalog : DataFrame with ``id_str`` and absolute ``file_loc``, or ``image_shard``/``image_row`` (see
        :func:`raregal.inputs.tables.read_catalog`).
    model : a :class:`~raregal.encoder.GalaxyEncoder` in eval mode (see :func:`load_model`).
    out : output Parquet path; its ``.parts`` folder holds finished chunks until the merge.
    chunk_size : rows per part file (the unit of resumption).
    batch_size, workers : images per forward pass; image-decoding worker processes.
    carry : catalog columns copied to the output (``ra`` and ``dec`` are, whenever the catalog has them).
    overwrite : replace an existing ``out`` instead of refusing.
    backend, precision : inference path (:func:`~raregal.encoder.runtime.make_runner`): auto, torch,
        onnx; auto, fp32, bf16, fp16.

    Returns the summary written to ``REPS.embed.json`` (counts, seconds, images/s).
    """
    out = check_output(out, overwrite=overwrite, batch_size=batch_size, chunk_size=chunk_size)
    carry = _check_carry(catalog, carry)
    catalog = catalog.reset_index(drop=True)
    if workers is None:  # a GPU eats images faster than a few processes decode them
        workers = max(1, min(16, (os.cpu_count() or 2) - 1)) if device_of(model).type == "cuda" else default_workers()
    pdir, n_chunks = _open_parts(out, model, catalog, chunk_size, carry, overwrite, model_name)
    todo = [c for c in range(n_chunks) if not part_done(_part(pdir, c), _skipped_part(pdir, c),
                                                         min(len(catalog), (c + 1) * chunk_size) - c * chunk_size)]
    if len(todo) < n_chunks:
        log.info("resuming: %d of %d chunks already done in %s", n_chunks - len(todo), n_chunks, pdir)
    bounds = {c: (c * chunk_size, min(len(catalog), (c + 1) * chunk_size)) for c in todo}
    t0 = time.perf_counter()
    runner = _embed_chunks(catalog, model, pdir, bounds, batch_size, workers, carry, backend, precision, progress)
    seconds = time.perf_counter() - t0
    settings = {"engine": "local", "model_name": model_name, "n_input": len(catalog), "chunk_size": chunk_size,
                "chunks": n_chunks, "chunks_resumed": n_chunks - len(todo), "seconds": seconds,
                "n_done": sum(e - s for s, e in bounds.values()), "batch_size": batch_size, "workers": workers,
                "n_workers": 1, "worker_pids": [os.getpid()], "device": str(device_of(model)),
                "backend": getattr(runner, "backend", None), "precision": getattr(runner, "precision", precision),
                "carry": carry}
    return _finish(out, pdir, n_chunks, model, settings)


def _part(pdir: Path, c: int) -> Path:
    """The finished part file of chunk ``c``."""
    return pdir / f"part-{c:05d}.parquet"


def _skipped_part(pdir: Path, c: int) -> Path:
    """The list of the images of chunk ``c`` that could not be read."""
    return pdir / f"part-{c:05d}.skipped.csv"


def part_done(part: Path, skipped: Path, n_rows: int) -> bool:
    """Whether the chunk (or Dask partition) of ``n_rows`` catalog rows whose part file is ``part`` is
    finished and sound: ``part`` reads as Parquet and, with its list of skipped images ``skipped``,
    accounts for every row. A damaged part (a run killed mid-write by an older raregal, a disk
    error, a truncated copy) is removed with a warning naming it, and the chunk is redone; it is
    never trusted, and never a traceback."""
    import pyarrow.parquet as pq

    if not part.exists():
        return False
    bad, counted = part, 0
    try:  # pyarrow's and pandas' many kinds of "not a table": whichever file it is, it is named
        counted = pq.read_metadata(part).num_rows
        bad = skipped
        # the list is whole when it has its columns and ends its last line (one cut at a line lacks rows)
        listed = pd.read_csv(skipped, dtype=str)
        if skipped.read_bytes()[-1:] != b"\n" or not {"id_str", "reason"} <= set(listed):
            raise ValueError(f"{skipped} is cut short")
        counted += len(listed)
        bad = None if counted == n_rows else part
    except Exception:  # noqa: BLE001
        pass
    if bad is not None:
        log.warning("embed: %s is damaged or incomplete; the %d galaxies of its chunk are embedded again", bad,
                    n_rows)
        part.unlink(missing_ok=True)  # raregal's own (check_parts_folder), and worthless
    return bad is None


def _open_parts(out: Path, model, catalog: pd.DataFrame, chunk_size: int, carry: list[str], overwrite: bool,
                model_name: str) -> tuple[Path, int]:
    """The parts folder of a run into ``out``, (re)started with this run's manifest; (folder, chunk count).

    Parts of another run (another fingerprint) are an InputError unless ``overwrite``, which removes them.
    """
    n = len(catalog)
    n_chunks = max(1, -(-n // chunk_size))
    pdir = parts_dir(out)
    open_parts_folder(pdir, MANIFEST, {"fingerprint": _fingerprint(model, catalog, chunk_size, carry), "n_rows": n,
                                       "chunk_size": chunk_size, "n_chunks": n_chunks, "model": model_name,
                                       "carry": carry}, overwrite=overwrite, unit="chunk size")
    return pdir, n_chunks


def open_parts_folder(pdir: Path, manifest: str, record: dict, *, overwrite: bool, unit: str) -> None:
    """Make ``pdir`` the parts folder of the run described by ``record`` (its ``fingerprint`` and
    settings), written to ``pdir/manifest``; parts of the same run stay, to be resumed.

    The folder is checked again (:func:`check_parts_folder`) right before anything in it is
    touched. Parts of another run (another fingerprint) are an InputError unless ``overwrite``,
    which removes them (the folder holds nothing else); ``unit`` names the size setting in the error.
    """
    check_parts_folder(pdir, manifest)
    try:
        old = json.loads((pdir / manifest).read_text()).get("fingerprint")
    except FileNotFoundError:
        old = None
    if old is not None and old != record["fingerprint"]:
        if not overwrite:
            raise InputError(f"{pdir} holds parts of a run with another model, catalog or {unit}; "
                             "delete it or pass overwrite", param="overwrite")
        shutil.rmtree(pdir)  # raregal embed's own files only: check_parts_folder said so
    pdir.mkdir(parents=True, exist_ok=True)
    write_json(pdir / manifest, record)


def _batches(bounds: dict[int, tuple[int, int]], batch_size: int) -> tuple[list[list[int]], list[int]]:
    """Row positions of each batch and the chunk it belongs to; batches never straddle two chunks,
    so each chunk is complete when its last batch arrives."""
    batches, chunk_of = [], []
    for c, (start, stop) in bounds.items():
        for s in range(start, stop, batch_size):
            batches.append(list(range(s, min(stop, s + batch_size))))
            chunk_of.append(c)
    return batches, chunk_of


def _embed_chunks(catalog: pd.DataFrame, model, pdir: Path, bounds: dict[int, tuple[int, int]], batch_size: int,
                  workers: int, carry: list[str], backend: str, precision: str, progress: bool):
    """Embed the chunks ``bounds`` (chunk -> (start, stop) rows) of ``catalog``, writing each one's part
    and skipped list as soon as it is complete. Returns the runner used (None when nothing was left)."""
    from tqdm.auto import tqdm

    device = device_of(model)
    batches, chunk_of = _batches(bounds, batch_size)
    dataset = ImageDataset(image_sources(catalog), eval_transform(model.config.input_size), model.config.channels,
                           resize_uint8=device.type == "cuda")  # decoding is what limits a GPU
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers if batches else 0,
                                         collate_fn=collate_images, pin_memory=device.type == "cuda")
    bar = tqdm(total=sum(e - s for s, e in bounds.values()), unit="img", unit_scale=True, desc="embed",
               disable=not progress)
    pending: list = []
    runner = make_runner(model, backend, precision) if batches else None
    for b, result in enumerate(_run(runner, loader)):
        pending.append(result)
        bar.update(len(batches[b]))
        c = chunk_of[b]
        if b + 1 == len(batches) or chunk_of[b + 1] != c:
            s, e = bounds[c]
            index, z, frac, failed = _stack(pending, model.representation_dim)
            rows = catalog.iloc[s:e].reset_index(drop=True)
            write_text(_skipped_part(pdir, c), _skipped_frame(rows, [(i - s, r) for i, r in failed])
                       .to_csv(index=False))
            write_parquet(_part(pdir, c), _frame(rows, index - s, z, frac, carry, model.schema.fractions))
            pending = []
    bar.close()
    return runner


def _finish(out: Path, pdir: Path, n_chunks: int, model, settings: dict) -> dict:
    """Merge the parts into ``out``, write the skipped list and the summary (:func:`write_summary` of
    ``settings`` and the counts), remove the parts; return the summary."""
    n_rows = _merge([_part(pdir, c) for c in range(n_chunks)], out)
    skipped = pd.concat([pd.read_csv(_skipped_part(pdir, c), dtype=str) for c in range(n_chunks)],
                        ignore_index=True)
    write_text(skipped_path(out), skipped.to_csv(index=False))
    summary = write_summary(out, model, n_embedded=n_rows, n_skipped=len(skipped), skipped_report=skipped_path(out),
                            **settings)
    shutil.rmtree(pdir)
    n = summary["n_input"]
    if len(skipped):
        log.warning("%d of %d images could not be read and were skipped, e.g. %s; list in %s", len(skipped), n,
                    ", ".join(skipped["id_str"].head(5)), skipped_path(out))
    log.info("embedded %d images (%d-d) in %.1f s (%.1f img/s) -> %s", n_rows, summary["representation_dim"],
             summary["seconds"], summary["images_per_s"] or 0.0, out)
    return summary


def embed(catalog, out: str | os.PathLike, model="demo", *, overwrite: bool = False, batch_size: int = 64,
          chunk_size: int = 4096, workers: int | None = None, carry=(), device: str | None = None,
          backend: str = "auto", precision: str = "auto", progress: bool = True) -> dict:
    """Embed every galaxy of a catalogue into a representation table: what ``raregal embed`` does.

    Parameters
    ----------
    catalog : path of a catalogue (``id_str`` + ``file_loc``, or Parquet shards with the images
        inside; :func:`raregal.inputs.tables.read_catalog`) or such a DataFrame.
    out : the representation table to write (Parquet: ``id_str``, ``feat_*``, ``*_fraction``,
        ``ra``/``dec``); an interrupted run resumes from its finished chunks.
    model : ``"demo"``, a checkpoint path or a Hugging Face id (:func:`raregal.load_model`), or a
        loaded :class:`~raregal.encoder.GalaxyEncoder`.
    device : ``"cpu"``, ``"cuda"``; None: a GPU when there is one.
    Other parameters: as :func:`embed_catalog`.

    Returns the summary written beside ``out`` (``REPS.embed.json``: counts, seconds, images/s).

    Examples
    --------
    >>> import raregal
    >>> raregal.embed("catalog.parquet", "reps.parquet", model="demo")  # doctest: +SKIP
    """
    from raregal.inputs.tables import read_catalog

    inputs = (catalog,) if isinstance(catalog, (str, os.PathLike)) else ()
    check_output(out, overwrite=overwrite, batch_size=batch_size, chunk_size=chunk_size, inputs=inputs)
    frame = read_catalog(catalog) if inputs else catalog
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = str(model) if isinstance(model, (str, os.PathLike)) else ""
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model, device=device)
    return embed_catalog(frame, model, out, chunk_size=chunk_size, batch_size=batch_size, workers=workers,
                         carry=carry, overwrite=overwrite, progress=progress, model_name=name, backend=backend,
                         precision=precision)
