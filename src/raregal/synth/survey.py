"""Make a whole synthetic survey: images on disk and a Zoobot-style catalog with the truth.

:func:`make_survey` assigns classes, renders every galaxy in parallel worker processes (chunks
of galaxies, a tqdm progress bar), writes each cutout atomically as PNG or JPEG under
``out_dir/images/``, and writes ``out_dir/catalog.parquet`` with ``id_str``, ``file_loc``
(relative to ``out_dir``, so the folder can move), ``true_class``, the generating parameters,
the full scene (``scene_json``: :func:`raregal.synth.render_scene` of it re-draws the cutout's
pixels) and simulated Galaxy Zoo DESI votes.

A run is resumable: settings go to ``out_dir/synth_config.json`` and a second call with the
same settings re-uses every cutout already on disk (each cutout is a pure function of the seed
and its index, so the result is the same as an uninterrupted run).
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd

from raregal.runs import folder
from raregal.atomic import atomic_path, write_json, write_parquet
from raregal.errors import InputError
from raregal.inputs.gz_trees import ANSWERS, TREE
from raregal.workers import usable_cores
from raregal.synth.bands import BANDS, PIXEL_SCALE, to_rgb
from raregal.synth.classes import DEFAULT_FRACTIONS, assign_classes, class_counts, galaxy_rng, sample_galaxy
from raregal.synth.galaxies import INFO_DEFAULTS
from raregal.synth.render import render_scene
from raregal.synth.votes import galaxy_votes

log = logging.getLogger("raregal")

#: Default cutout size in pixels (see :data:`raregal.synth.bands.PIXEL_SCALE`).
DEFAULT_SIZE = 64
FORMATS = {"png": "png", "jpg": "jpg", "jpeg": "jpg"}
CONFIG_NAME = "synth_config.json"
CATALOG_NAME = "catalog.parquet"
#: Bump when a change to the generator changes pixels: a resumed run then refuses old images.
GENERATOR_VERSION = 1


def image_path(index: int, fmt: str) -> str:
    """Relative path of galaxy ``index``'s cutout: ``images/<index // 1000>/synth_<index>.<fmt>``."""
    return f"images/{index // 1000:04d}/{galaxy_id(index)}.{fmt}"


def galaxy_id(index: int) -> str:
    """``id_str`` of galaxy ``index``."""
    return f"synth_{index:07d}"


def save_image(rgb: np.ndarray, path: Path, fmt: str) -> None:
    """Write an (H, W, 3) uint8 image atomically as PNG or JPEG (quality 95)."""
    from PIL import Image

    with atomic_path(path) as tmp:
        if fmt == "png":
            Image.fromarray(rgb).save(tmp, format="PNG", compress_level=3)
        else:
            Image.fromarray(rgb).save(tmp, format="JPEG", quality=95)


def catalog_row(index: int, cls: str, seed: int, size: int, pixel_scale: float, fmt: str) -> tuple[dict, dict]:
    """(catalog row, scene) of galaxy ``index`` of class ``cls``: ids, truth, parameters, votes."""
    scene, info = sample_galaxy(cls, seed, index, size, pixel_scale)
    row = {"id_str": galaxy_id(index), "file_loc": image_path(index, fmt), "true_class": cls}
    row.update({k: info.get(k, v) for k, v in INFO_DEFAULTS.items()})
    for b, band in enumerate(BANDS):
        row[f"psf_fwhm_{band}"] = float(scene["psf_fwhm"][b])
        row[f"sky_sigma_{band}"] = float(scene["sky_sigma"][b])
    row["missing_band"] = BANDS[scene["missing_band"]] if scene.get("missing_band") is not None else ""
    row["render_seed"] = int(scene["seed"])
    row["scene_json"] = json.dumps(scene, separators=(",", ":"), default=float)
    votes = galaxy_votes(info, galaxy_rng(seed, index, stream=2))
    row.update(votes)
    for q in TREE:
        row[f"{q.name}_total-votes"] = int(sum(votes[a] for a in q.answers))
    return row, scene


def _render_chunk(indices: list[int], classes: list[str], seed: int, size: int, pixel_scale: float,
                  fmt: str, out_dir: str) -> tuple[list[dict], int]:
    """Worker: make the rows of a chunk of galaxies, rendering cutouts not yet on disk."""
    rows, rendered = [], 0
    for index, cls in zip(indices, classes):
        row, scene = catalog_row(index, cls, seed, size, pixel_scale, fmt)
        path = Path(out_dir) / row["file_loc"]
        if not path.exists():
            save_image(to_rgb(render_scene(scene), pixel_scale), path, fmt)
            rendered += 1
        rows.append(row)
    return rows, rendered


def _check_config(out_dir: Path, config: dict) -> None:
    path = out_dir / CONFIG_NAME
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: unreadable ({err}); delete it or choose another --out") from None
        if old != config:
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise InputError(f"{out_dir} holds a survey made with different settings ({', '.join(diff)}); "
                             "choose another --out or delete that folder")
    write_json(path, config)


def make_survey(n_galaxies: int, out_dir, seed: int = 0, size: int = DEFAULT_SIZE, fmt: str = "png",
                class_fractions: dict[str, float] | None = None, n_workers: int | None = None,
                preview: bool = False, progress: bool = True, pixel_scale: float = PIXEL_SCALE,
                chunk_size: int | None = None) -> pd.DataFrame:
    """Render a synthetic survey of ``n_galaxies`` cutouts into ``out_dir``; return its catalog.

    Parameters
    ----------
    n_galaxies : int
        Number of galaxies (at least one more than the number of rare classes in use).
    out_dir : path
        Folder for ``images/``, ``catalog.parquet``, ``synth_config.json`` (and ``preview.png``).
    seed : int
        Everything (classes, galaxies, noise, votes) follows from it: same seed, same pixels.
    size : int
        Cutout width and height in pixels; ``pixel_scale`` is arcsec per pixel (default 0.524,
        Legacy Surveys pixels binned 2x2, so 64 pixels span 33.5'').
    fmt : "png" or "jpg"
    class_fractions : dict, optional
        Share of the survey per rare class, updating :data:`DEFAULT_FRACTIONS` (0.3% each).
    n_workers : int, optional
        Worker processes (default: all CPU cores available; 1 renders in this process).
    preview : bool
        Also write ``out_dir/preview.png``, a contact sheet with examples of every class.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    pandas.DataFrame
        The catalog, one row per galaxy in index order (also written to ``catalog.parquet``).
    """
    _check_args(n_galaxies, size, fmt, pixel_scale)
    fmt = FORMATS[fmt.lower()]
    n_galaxies, size, seed = int(n_galaxies), int(size), int(seed)
    class_counts(n_galaxies, class_fractions)  # validates the fractions and n_galaxies
    fractions = dict(DEFAULT_FRACTIONS)
    fractions.update({k: float(v) for k, v in (class_fractions or {}).items()})
    out_dir = folder.check_output_folder(out_dir, "synth", overwrite=True, flag="out_dir")  # same settings: resumes
    folder.mark(out_dir, "synth", "raregal synth")
    config = {"generator_version": GENERATOR_VERSION, "n_galaxies": n_galaxies, "seed": seed, "size": size,
              "pixel_scale": float(pixel_scale), "format": fmt, "class_fractions": fractions}
    _check_config(out_dir, config)

    labels = assign_classes(n_galaxies, seed, class_fractions)
    n_workers = usable_cores() if n_workers is None else max(1, int(n_workers))
    chunk = chunk_size or int(np.clip(n_galaxies // (n_workers * 8) or 1, 1, 100))
    chunks = [list(range(i, min(i + chunk, n_galaxies))) for i in range(0, n_galaxies, chunk)]
    args = (seed, size, float(pixel_scale), fmt, str(out_dir))

    t0 = time.perf_counter()
    results, rendered = _render_chunks(chunks, labels, args, n_workers, progress)
    seconds = time.perf_counter() - t0

    catalog = pd.DataFrame([row for k in range(len(chunks)) for row in results[k]])
    catalog = _order_columns(catalog)
    write_parquet(out_dir / CATALOG_NAME, catalog)
    rate = rendered / seconds if seconds > 0 and rendered else float("nan")
    log.info("synth: %d galaxies (%d rendered, %d already on disk) in %.1f s (%.0f galaxies/s, %d workers)",
             n_galaxies, rendered, n_galaxies - rendered, seconds, rate, n_workers)
    log.info("synth: catalog %s; images in %s", out_dir / CATALOG_NAME, out_dir / "images")
    if preview:
        from raregal.synth.preview import write_preview

        path = write_preview(catalog, out_dir, out_dir / "preview.png")
        log.info("synth: preview %s", path)
    return catalog


def _check_args(n_galaxies, size, fmt: str, pixel_scale) -> None:
    """InputError naming the flag of the first bad argument of :func:`make_survey`."""
    if int(n_galaxies) < 1:
        raise InputError(f"--n-galaxies must be positive, got {n_galaxies}")
    if int(size) < 16:
        raise InputError(f"--size must be at least 16 pixels, got {size}")
    if fmt.lower() not in FORMATS:
        raise InputError(f"--format must be png or jpg, got {fmt!r}")
    if not pixel_scale > 0:
        raise InputError(f"pixel scale must be positive, got {pixel_scale}")


def _render_chunks(chunks: list[list[int]], labels, args: tuple, n_workers: int,
                   progress: bool) -> tuple[dict[int, list[dict]], int]:
    """Render every chunk of galaxy indices (in this process, or on ``n_workers`` spawned ones).

    Returns the catalog rows by chunk number and how many images were rendered (not found on disk).
    """
    from tqdm.auto import tqdm

    results: dict[int, list[dict]] = {}
    rendered = 0
    bar = tqdm(total=sum(map(len, chunks)), desc="synth", unit="gal", disable=not progress)
    try:
        if n_workers == 1 or len(chunks) == 1:
            for k, idx in enumerate(chunks):
                rows, r = _render_chunk(idx, [labels[i] for i in idx], *args)
                results[k], rendered = rows, rendered + r
                bar.update(len(idx))
        else:
            import multiprocessing as mp

            # spawn: workers start clean even when the caller has threads (torch, Dask) running
            with ProcessPoolExecutor(max_workers=n_workers, mp_context=mp.get_context("spawn")) as pool:
                futures = {pool.submit(_render_chunk, idx, [labels[i] for i in idx], *args): k
                           for k, idx in enumerate(chunks)}
                for fut in as_completed(futures):
                    rows, r = fut.result()
                    results[futures[fut]], rendered = rows, rendered + r
                    bar.update(len(rows))
    finally:
        bar.close()
    return results, rendered


def _order_columns(catalog: pd.DataFrame) -> pd.DataFrame:
    first = ["id_str", "file_loc", "true_class"]
    votes = list(ANSWERS) + [f"{q.name}_total-votes" for q in TREE]
    rest = [c for c in catalog.columns if c not in first and c not in votes and c != "scene_json"]
    return catalog[first + rest + votes + ["scene_json"]].reset_index(drop=True)
