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
with the reason, in ``REPS.skipped.csv``; ``REPS.embed.json`` records counts and timings.

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
from raregal.encoder.loading import load_model
from raregal.encoder.runtime import make_runner
from raregal.images.dataset import ImageDataset, collate_images, eval_transform
from raregal.workers import default_workers

log = logging.getLogger("raregal")

__all__ = ["embed_catalog", "embed_chunk", "load_model", "parts_dir", "skipped_path"]

#: Catalog columns every embedding carries when the catalog has them (sky position; any capitalisation).
ALWAYS_CARRIED = ("ra", "dec")
#: Fraction columns of every known tree: embed writes those of its model's, so none may be carried.
_ALL_FRACTIONS = frozenset(f for tree in gz_trees.SCHEMAS.values() for f in tree.fractions)


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
    """The JSON an embedding run into ``out`` writes beside it (settings, counts, speed)."""
    out = Path(out)
    return out.with_name(out.with_suffix("").name + ".embed.json")


def check_output(out: str | os.PathLike, *, overwrite: bool = False, batch_size: int = 64, chunk_size: int = 4096,
                 inputs: tuple = ()) -> Path:
    """Check, before any model is loaded, that an embedding may be written to ``out``; return it as a Path.

    ``out`` must be a new file, or with ``overwrite`` an earlier output of ``raregal embed``
    (recognised by its ``.embed.json`` beside it); never a folder, one of ``inputs`` (the
    catalog), or a file raregal did not write. Errors name the parameter.
    """
    out = Path(out)
    for name, value in (("batch_size", batch_size), ("chunk_size", chunk_size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name}={value!r}: must be a positive integer", param=name)
    if any(Path(src).exists() and out.resolve() == Path(src).resolve() for src in inputs):
        raise InputError(f"out {out}: is the input catalog; write the representations to another file", param="out")
    if out.is_dir():
        raise InputError(f"out {out}: is a folder; give the Parquet file to write (e.g. {out / 'reps.parquet'})",
                         param="out")
    if out.exists() and not overwrite:
        raise InputError(f"out {out}: exists; pass overwrite to replace it", param=("out", "overwrite"))
    if out.exists() and not summary_path(out).is_file():
        raise InputError(f"out {out}: exists and was not written by `raregal embed` (no {summary_path(out).name} "
                         "beside it); raregal never replaces it. Give a new file name", param="out")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InputError(f"out {out}: cannot be created ({parent} is not a writable folder)", param="out")
    _check_parts_folder(parts_dir(out))
    return out


def _check_parts_folder(pdir: Path) -> None:
    """Refuse a ``.parts`` path that is not raregal's: a file, or a folder with files but no manifest of
    ``raregal embed`` (raregal would otherwise delete it after the merge)."""
    if pdir.exists() and not pdir.is_dir():
        raise InputError(f"{pdir}: is a file; raregal embed keeps its finished chunks there and never replaces "
                         "a file it did not write. Move it, or give another --out", param="out")
    if not pdir.is_dir() or not any(pdir.iterdir()):
        return
    try:
        ours = "fingerprint" in json.loads((pdir / "manifest.json").read_text())
    except (OSError, ValueError, TypeError):
        ours = False
    if not ours:
        raise InputError(f"{pdir}: the folder holds files raregal did not write (no manifest.json of raregal "
                         "embed); raregal never deletes them. Move it, or give another --out", param="out")


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
    todo = [c for c in range(n_chunks) if not _part_done(pdir, c, min(len(catalog), (c + 1) * chunk_size)
                                                          - c * chunk_size)]
    if len(todo) < n_chunks:
        log.info("resuming: %d of %d chunks already done in %s", n_chunks - len(todo), n_chunks, pdir)
    bounds = {c: (c * chunk_size, min(len(catalog), (c + 1) * chunk_size)) for c in todo}
    t0 = time.perf_counter()
    runner = _embed_chunks(catalog, model, pdir, bounds, batch_size, workers, carry, backend, precision, progress)
    seconds = time.perf_counter() - t0
    remaining = sum(e - s for s, e in bounds.values())
    summary = {"output": str(out.resolve()), "model": model_name, "arch": model.config.arch,
               "representation_dim": model.representation_dim, "input_size": model.config.input_size,
               "has_fractions": model.head is not None, "schema": model.schema.name if model.head is not None
               else None, "n_input": len(catalog), "chunks": n_chunks, "chunks_resumed": n_chunks - len(todo),
               "seconds": round(seconds, 3),
               "images_per_s": round(remaining / seconds, 2) if seconds > 0 and remaining else None,
               "batch_size": batch_size, "workers": workers, "device": str(device_of(model)), "carry": carry,
               "backend": getattr(runner, "backend", None), "precision": getattr(runner, "precision", precision)}
    return _finish(out, pdir, n_chunks, summary)


def _part(pdir: Path, c: int) -> Path:
    """The finished part file of chunk ``c``."""
    return pdir / f"part-{c:05d}.parquet"


def _part_done(pdir: Path, c: int, n_rows: int) -> bool:
    """Whether chunk ``c`` (``n_rows`` catalog rows) is finished and sound: its part file reads as Parquet
    and, with its skipped list, accounts for every row. A damaged part (a run killed mid-write by
    an older raregal, a disk error) is removed with a warning naming it, and the chunk is redone."""
    import pyarrow.parquet as pq

    part, skipped = _part(pdir, c), pdir / f"part-{c:05d}.skipped.csv"
    if not part.exists():
        return False
    try:
        sound = pq.read_metadata(part).num_rows + len(pd.read_csv(skipped, dtype=str)) == n_rows
    except Exception:  # pyarrow's and pandas' many kinds of "not a table"
        sound = False
    if not sound:
        log.warning("embed: %s is damaged or incomplete; its %d galaxies are embedded again", part, n_rows)
        part.unlink(missing_ok=True)
    return sound


def _open_parts(out: Path, model, catalog: pd.DataFrame, chunk_size: int, carry: list[str], overwrite: bool,
                model_name: str) -> tuple[Path, int]:
    """The parts folder of a run into ``out``, (re)started with this run's manifest; (folder, chunk count).

    Parts of another run (another fingerprint) are an InputError unless ``overwrite``, which removes them.
    """
    n = len(catalog)
    n_chunks = max(1, -(-n // chunk_size))
    pdir = parts_dir(out)
    fingerprint = _fingerprint(model, catalog, chunk_size, carry)
    manifest = pdir / "manifest.json"
    if pdir.exists() and manifest.is_file() and json.loads(manifest.read_text()).get("fingerprint") != fingerprint:
        if not overwrite:
            raise InputError(f"{pdir} holds parts of a run with another model, catalog or chunk size; "
                             "delete it or pass --overwrite")
        shutil.rmtree(pdir)
    pdir.mkdir(parents=True, exist_ok=True)
    write_json(manifest, {"fingerprint": fingerprint, "n_rows": n, "chunk_size": chunk_size, "n_chunks": n_chunks,
                          "model": model_name, "carry": carry})
    return pdir, n_chunks


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
            write_text(pdir / f"part-{c:05d}.skipped.csv", _skipped_frame(rows, [(i - s, r) for i, r in failed])
                       .to_csv(index=False))
            write_parquet(_part(pdir, c), _frame(rows, index - s, z, frac, carry, model.schema.fractions))
            pending = []
    bar.close()
    return runner


def _finish(out: Path, pdir: Path, n_chunks: int, summary: dict) -> dict:
    """Merge the parts into ``out``, write the skipped list and ``summary`` (counts added), remove the parts."""
    n_rows = _merge([_part(pdir, c) for c in range(n_chunks)], out)
    skipped = pd.concat([pd.read_csv(pdir / f"part-{c:05d}.skipped.csv", dtype=str) for c in range(n_chunks)],
                        ignore_index=True)
    write_text(skipped_path(out), skipped.to_csv(index=False))
    summary.update({"n_embedded": n_rows, "n_skipped": len(skipped),
                    "skipped_report": str(skipped_path(out).resolve())})
    write_json(summary_path(out), summary)
    shutil.rmtree(pdir)
    n = summary["n_input"]
    if len(skipped):
        log.warning("%d of %d images could not be read and were skipped, e.g. %s; list in %s", len(skipped), n,
                    ", ".join(skipped["id_str"].head(5)), skipped_path(out))
    log.info("embedded %d images (%d-d) in %.1f s (%.1f img/s) -> %s", n_rows, summary["representation_dim"],
             summary["seconds"], summary["images_per_s"] or 0.0, out)
    return summary
