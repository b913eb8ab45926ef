"""Cutouts from the Legacy Surveys: fetch each galaxy's image by RA/Dec into a catalog ``raregal embed`` reads.

:func:`fetch_cutouts` asks the DESI Legacy Imaging Surveys' cutout service (or any server that
answers the same URL form, see :data:`DEFAULT_SERVICE` and :func:`check_service`) for a JPEG or
FITS cutout centred on each galaxy's ``ra``/``dec`` (degrees) and writes into its folder:

* ``images/<xx>/<id>.jpg`` (or ``.fits``): one file per galaxy, each written atomically (``xx``:
  two hex digits of a hash of the id, so no folder holds millions of files; ids are made safe
  for file names);
* ``catalog.parquet``: ``id_str``, ``file_loc`` (relative to the folder), ``ra``, ``dec`` and the
  input catalog's other columns, in input order, for the galaxies whose cutout is there;
* ``failed.csv``: ``id_str, ra, dec, reason`` for the others;
* ``cutouts.json``: settings, counts and timing.

**Resuming.** A cutout file that exists is complete (it was written atomically) and is not
fetched again, so an interrupted run continues where it stopped and a rerun retries only the
failures. The settings (service, layer, pixel scale, size, format) are recorded; a rerun with
other settings is refused unless ``overwrite``, which discards the earlier cutouts.

**Requests.** At most ``workers`` are in flight. An answer of 5xx or 429, a timeout or a broken
connection is retried ``retries`` times, after ``backoff`` x 2^attempt seconds (with jitter; at
least what a ``Retry-After`` header asks, at most a minute); other 4xx answers are final. An
answer is kept only when it is the image asked for: JPEG bytes (``FF D8 FF``) or FITS
(``SIMPLE  =``) that decode and are not blank (one value everywhere: outside the survey's
footprint). The service's HTML error page is a failure listed with its title, never a saved
"image". Rows whose ``ra`` is not in [0, 360) or ``dec`` not in [-90, 90] are not requested and
are listed as failures. When the first requests all fail to connect, the run stops with an error
naming the service instead of listing every galaxy as failed.

FITS cutouts are (g, r, z) cubes in nanomaggies (``bands=grz``); ``raregal embed`` shows them in
the colours of the survey's JPEGs (:mod:`raregal.images.colour`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import re
import string
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import pandas as pd

from raregal.runs import folder
from raregal.atomic import write_bytes, write_json, write_parquet, write_text
from raregal.errors import InputError
from raregal.validation import Integer, Number, Options, check_params

log = logging.getLogger("raregal")

#: The public Legacy Surveys cutout service. FITS requests add ``&bands=grz`` (see :func:`cutout_url`).
DEFAULT_SERVICE = ("https://www.legacysurvey.org/viewer/cutout.{format}?ra={ra}&dec={dec}&layer={layer}"
                   "&pixscale={pixscale}&size={size}")
#: Placeholders a service template may use; ``{ra}`` and ``{dec}`` are required.
PLACEHOLDERS = ("ra", "dec", "layer", "pixscale", "size", "format", "bands")
FORMATS = ("jpg", "fits")
#: Bands of a FITS cutout, in plane order.
FITS_BANDS = "grz"
#: The largest answer accepted (bytes): a 3000 px grz float32 cube is 108 MB.
MAX_BYTES = 128 * 2**20
MARKER_KIND = "cutouts"
_SUMMARY, _CATALOG, _FAILED = "cutouts.json", "catalog.parquet", "failed.csv"
_SETTINGS = ("service", "layer", "pixscale", "size", "format")


class CutoutError(Exception):
    """One galaxy's cutout could not be had; the message is the reason listed in failed.csv."""

    def __init__(self, reason: str, retry: bool = False, wait_s: float = 0.0, connect: bool = False):
        super().__init__(reason)
        self.retry, self.wait_s, self.connect = retry, wait_s, connect


def check_service(template: str | None) -> str:
    """The URL template to use (``DEFAULT_SERVICE`` for None), checked: http(s), known placeholders, ra and dec.

    Raises InputError naming ``service``.
    """
    template = DEFAULT_SERVICE if template is None else str(template)
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise InputError(f"service {template!r}: not a URL template ({err}); write placeholders as {{ra}}",
                         param="service") from err
    unknown = sorted(f for f in fields if f not in PLACEHOLDERS)
    if unknown:
        raise InputError(f"service {template!r}: unknown placeholder(s) {', '.join('{' + f + '}' for f in unknown)}; "
                         f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}", param="service")
    if not {"ra", "dec"} <= fields:
        raise InputError(f"service {template!r}: the URL needs {{ra}} and {{dec}} placeholders", param="service")
    if urllib.parse.urlsplit(template).scheme not in ("http", "https"):
        raise InputError(f"service {template!r}: must be an http:// or https:// URL", param="service")
    return template


def cutout_url(template: str, ra: float, dec: float, layer: str, pixscale: float, size: int, fmt: str) -> str:
    """The URL of one cutout: ``template`` filled in (the default service's FITS URL gets ``&bands=grz``)."""
    url = template.format(ra=f"{ra:.7f}", dec=f"{dec:.7f}", layer=urllib.parse.quote(layer), pixscale=f"{pixscale:g}",
                          size=int(size), format=fmt, bands=FITS_BANDS if fmt == "fits" else "")
    if template == DEFAULT_SERVICE and fmt == "fits":
        url += f"&bands={FITS_BANDS}"
    return url


#: What each cutout setting may be: arcsec per pixel (0.262 is the native pixel), pixels a side,
#: requests in flight at once, seconds.
SETTINGS = {"pixscale": Number(0.0, above=True), "size": Integer(1, 3000), "fmt": Options(*FORMATS),
            "workers": Integer(1, 64), "timeout": Number(0.0, above=True), "retries": Integer(0, 20),
            "backoff": Number(0.0)}


def check_settings(layer: str, pixscale: float, size: int, fmt: str, workers: int, timeout: float,
                   retries: int, backoff: float) -> None:
    """Raise InputError naming the parameter for a setting that cannot work."""
    if not isinstance(layer, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", layer):
        raise InputError(f"layer {layer!r}: not a layer name (e.g. ls-dr10, ls-dr9)", param="layer")
    check_params(dict(pixscale=pixscale, size=size, fmt=fmt, workers=workers, timeout=timeout, retries=retries,
                      backoff=backoff), SETTINGS)


def sky_problems(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Per row, why (``ra``, ``dec``) in degrees cannot be requested ("" when it can): missing (NaN), infinite or
    out of range."""
    ra, dec = np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)
    why = np.full(len(ra), "", dtype=object)
    for name, v in (("ra", ra), ("dec", dec)):
        why[np.isnan(v) & (why == "")] = f"{name} is missing"
        why[np.isinf(v) & (why == "")] = f"{name} is infinite"
    out_ra = np.isfinite(ra) & ((ra < 0) | (ra >= 360))
    out_dec = np.isfinite(dec) & ((dec < -90) | (dec > 90))
    why[out_ra & (why == "")] = [f"ra {v:g} is outside [0, 360) degrees" for v in ra[out_ra & (why == "")]]
    why[out_dec & (why == "")] = [f"dec {v:g} is outside [-90, 90] degrees" for v in dec[out_dec & (why == "")]]
    return why


def file_loc(id_str: str, fmt: str) -> str:
    """Where the cutout of ``id_str`` goes, relative to the output folder: ``images/<xx>/<safe id>.<fmt>``."""
    digest = hashlib.sha1(id_str.encode("utf-8")).hexdigest()
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", id_str)[:150].lstrip(".") or "galaxy"
    if safe != id_str:  # two ids that differ only in unsafe characters must not share a file
        safe = f"{safe}-{digest[:10]}"
    return f"images/{digest[:2]}/{safe}.{fmt}"


def _retry_after(headers) -> float:
    try:
        return min(60.0, max(0.0, float(headers.get("Retry-After", 0))))
    except (TypeError, ValueError):
        return 0.0


def _request(url: str, timeout: float) -> tuple[bytes, str]:
    """One GET: (body, content type); raises CutoutError saying whether a retry may help."""
    from raregal import __version__

    req = urllib.request.Request(url, headers={"User-Agent": f"raregal/{__version__} (cutouts)"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = resp.read(MAX_BYTES + 1)
            ctype = resp.headers.get("Content-Type", "") or ""
    except urllib.error.HTTPError as err:
        retry = err.code >= 500 or err.code == 429
        raise CutoutError(f"HTTP {err.code} {err.reason}", retry=retry, wait_s=_retry_after(err.headers)) from err
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError):
            raise CutoutError(f"timed out after {timeout:g} s", retry=True) from err
        raise CutoutError(f"cannot connect: {err.reason}", retry=True, connect=True) from err
    except (TimeoutError, OSError) as err:  # socket timeouts, resets, a server that hung up mid-answer
        text = f"timed out after {timeout:g} s" if isinstance(err, TimeoutError) else f"{type(err).__name__}: {err}"
        raise CutoutError(text, retry=True) from err
    except Exception as err:  # http.client's IncompleteRead, BadStatusLine, ...
        raise CutoutError(f"broken answer: {type(err).__name__}: {err}", retry=True) from err
    if len(data) > MAX_BYTES:
        raise CutoutError(f"the answer is larger than {MAX_BYTES // 2**20} MB; not a cutout")
    return data, ctype


def check_cutout(data: bytes, ctype: str, fmt: str) -> None:
    """Raise CutoutError unless ``data`` is a readable, non-blank JPEG (``fmt="jpg"``) or FITS image."""
    from raregal.images.decode import EncodedImage, image_kind, not_an_image

    magic = b"\xff\xd8\xff" if fmt == "jpg" else b"SIMPLE  ="
    if ctype.lower().startswith("text/") or not data.startswith(magic):
        kind = {"fits": "a FITS file", "raster": "a PNG or JPEG"}.get(image_kind(EncodedImage(data, "")), "")
        what = f"{kind}, not the {fmt.upper()} cutout asked for" if kind and not data.startswith(magic) else \
            f"{not_an_image(data)}; expected a {fmt.upper()} cutout"
        raise CutoutError(f"the service answered with {what}" + (f" (Content-Type {ctype})" if ctype else ""))
    try:
        if fmt == "jpg":
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                pixels = np.asarray(im.convert("RGB"))
        else:
            from raregal.images.decode import EncodedImage, read_fits_hdu

            pixels = read_fits_hdu(EncodedImage(data, "cutout"))[0]
    except Exception as err:
        raise CutoutError(f"the {fmt.upper()} answer cannot be read: {type(err).__name__}: {err}") from err
    finite = pixels[np.isfinite(pixels)] if pixels.dtype.kind == "f" else pixels.ravel()
    if finite.size == 0 or finite.min() == finite.max():
        raise CutoutError("blank cutout (one value everywhere): outside the survey's footprint?")


def fetch_one(url: str, fmt: str, timeout: float, retries: int, backoff: float) -> bytes:
    """The checked cutout at ``url``, retrying what may pass; raises CutoutError with the last reason."""
    for attempt in range(retries + 1):
        try:
            data, ctype = _request(url, timeout)
            check_cutout(data, ctype, fmt)
            return data
        except CutoutError as err:
            if not err.retry or attempt == retries:
                if attempt:
                    raise CutoutError(f"{err} (after {attempt + 1} tries)", connect=err.connect) from err
                raise
            time.sleep(max(err.wait_s, backoff * 2 ** attempt * (0.5 + random.random())))
    raise AssertionError("unreachable")  # pragma: no cover


def read_sky_catalog(catalog) -> pd.DataFrame:
    """The input catalog (path or DataFrame) with ``id_str``, numeric ``ra``, ``dec`` (``RA``/``DEC`` in any case
    are renamed); images inside the catalog are not read."""
    from raregal.inputs.tables import check_ids, read_table
    from raregal.inputs.shards import IMAGE, has_image_column

    if isinstance(catalog, pd.DataFrame):
        frame, where = catalog.copy(), "catalog"
    else:
        where = f"catalog {catalog}"
        columns = None
        if Path(catalog).exists() and has_image_column(catalog):
            import pyarrow.parquet as pq
            from raregal.inputs.shards import parquet_files

            columns = [n for n in pq.read_schema(parquet_files(catalog)[0]).names if n != IMAGE]
        frame = read_table(catalog, columns=columns)
    from raregal.inputs.sky import find_columns

    check_ids(frame, where)
    frame["id_str"] = frame["id_str"].astype(str)
    found = dict(zip(("ra", "dec"), find_columns(frame)))  # RA/DEC in any case, as raregal.inputs.sky reads them
    frame = frame.rename(columns={v: k for k, v in found.items() if v is not None and v != k})
    for col in ("ra", "dec"):
        if col not in frame.columns:
            raise InputError(f"{where}: no column '{col}' (degrees, ICRS/J2000); the catalog has "
                             f"{', '.join(map(str, frame.columns[:12]))}", param="catalog")
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().sum() > frame[col].isna().sum():
            raise InputError(f"{where}: column '{col}' holds values that are not numbers of degrees "
                             f"(e.g. {frame[col][values.isna() & frame[col].notna()].iloc[0]!r})", param="catalog")
        frame[col] = values.astype(np.float64)
    return frame


def _existing(out_dir: Path) -> set[str]:
    """Relative paths of the cutout files already in ``out_dir/images`` (one listing per subfolder)."""
    found = set()
    images = out_dir / "images"
    if images.is_dir():
        for sub in images.iterdir():
            if sub.is_dir():
                found.update(f"images/{sub.name}/{f.name}" for f in sub.iterdir()
                             if not f.name.startswith(".") and f.is_file())
    return found


def _prepare(out_dir: Path, settings: dict, catalog, overwrite: bool) -> None:
    """Check ``out_dir`` may hold these cutouts (new, or earlier cutouts with the same settings), before any request."""
    inputs = () if isinstance(catalog, pd.DataFrame) else (catalog,)
    folder.check_output_folder(out_dir, MARKER_KIND, overwrite=True, inputs=inputs, flag="out_dir")
    summary = out_dir / _SUMMARY
    if not summary.is_file() or overwrite:
        return
    import json

    try:
        before = json.loads(summary.read_text()).get("settings", {})
    except (OSError, ValueError):
        before = {}
    differ = [k for k in _SETTINGS if before.get(k) != settings[k]]
    if differ:
        was = ", ".join(f"{k} {before.get(k)!r}" for k in differ)
        raise InputError(f"out_dir {out_dir}: holds cutouts made with other settings ({was}); give another folder, "
                         "or pass overwrite to discard them", param=("out_dir", "overwrite"))


def _run_requests(jobs: list[tuple[int, str, Path]], fmt: str, workers: int, timeout: float, retries: int,
                  backoff: float, progress: bool) -> dict[int, str]:
    """Fetch ``jobs`` (row, url, destination), at most ``workers`` in flight; returns {row: reason} of the failures."""
    from tqdm.auto import tqdm

    def one(job):
        row, url, dest = job
        write_bytes(dest, fetch_one(url, fmt, timeout, retries, backoff))

    failed: dict[int, str] = {}
    done = connect_fails = 0
    todo = iter(jobs)
    bar = tqdm(total=len(jobs), unit="img", desc="cutouts", disable=not progress)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = {}
        try:
            while True:
                while len(pending) < 2 * workers and (job := next(todo, None)) is not None:
                    pending[pool.submit(one, job)] = job
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    row = pending.pop(fut)[0]
                    err = fut.exception()
                    done += 1
                    bar.update(1)
                    if err is None:
                        continue
                    if not isinstance(err, CutoutError):
                        raise err
                    failed[row] = str(err)
                    connect_fails += err.connect
                if connect_fails >= min(len(jobs), 2 * workers) and connect_fails == done:
                    raise InputError(f"service: none of the first {done} requests could connect "
                                     f"({failed[row]}); check the service URL and the network", param="service")
        finally:
            for fut in pending:
                fut.cancel()
            bar.close()
    return failed


def fetch_cutouts(catalog, out_dir: str | os.PathLike, *, layer: str = "ls-dr10", pixscale: float = 0.262,
                  size: int = 256, fmt: str = "jpg", workers: int = 8, service: str | None = None,
                  timeout: float = 60.0, retries: int = 4, backoff: float = 1.0, overwrite: bool = False,
                  progress: bool = True) -> dict:
    """Fetch a cutout of every galaxy of ``catalog`` into ``out_dir`` (see the module docstring).

    Parameters
    ----------
    catalog : a table (path or DataFrame) with ``id_str``, ``ra``, ``dec`` in degrees; other
        columns are carried into the output catalog (an input ``file_loc`` or ``image`` is not).
    out_dir : the output folder: new, empty, or an earlier ``raregal cutouts`` folder (resumed).
    layer, pixscale, size, fmt : the survey layer (``ls-dr10``, ``ls-dr9``, ...), arcsec per pixel,
        width in pixels, ``"jpg"`` or ``"fits"`` (a g, r, z cube in nanomaggies).
    workers : requests in flight at once.
    service : URL template with ``{ra}``, ``{dec}`` and optionally ``{layer}``, ``{pixscale}``,
        ``{size}``, ``{format}``, ``{bands}`` (default :data:`DEFAULT_SERVICE`).
    timeout, retries, backoff : seconds to wait for an answer; retries of a 5xx, 429 or timeout;
        first wait before a retry in seconds, doubled each time.
    overwrite : discard cutouts fetched earlier with other settings instead of refusing.

    Returns the summary also written to ``out_dir/cutouts.json`` (counts, seconds, paths).
    Raises InputError naming the parameter for bad settings, before any request.
    """
    template = check_service(service)
    check_settings(layer, pixscale, size, fmt, workers, timeout, retries, backoff)
    out_dir = Path(out_dir)
    settings = {"service": template, "layer": layer, "pixscale": float(pixscale), "size": int(size), "format": fmt}
    frame = read_sky_catalog(catalog)
    _prepare(out_dir, settings, catalog, overwrite)
    t0 = time.perf_counter()
    folder.mark(out_dir, MARKER_KIND, "raregal cutouts")
    with folder.WriteLock(out_dir, "raregal cutouts"):
        if overwrite:
            folder.remove_outputs(out_dir, MARKER_KIND)
        write_json(out_dir / _SUMMARY, {"settings": settings, "status": "fetching"})  # a rerun must match them
        locs = [file_loc(i, fmt) for i in frame["id_str"]]
        reasons = sky_problems(frame["ra"].to_numpy(), frame["dec"].to_numpy())
        have = _existing(out_dir)
        jobs = [(r, cutout_url(template, frame["ra"].iat[r], frame["dec"].iat[r], layer, pixscale, size, fmt),
                 out_dir / locs[r]) for r in range(len(frame)) if not reasons[r] and locs[r] not in have]
        n_before = int(sum(1 for r in range(len(frame)) if not reasons[r] and locs[r] in have))
        log.info("cutouts: %d galaxies, %d already fetched, %d to fetch, %d with bad coordinates", len(frame),
                 n_before, len(jobs), int((reasons != "").sum()))
        for row, why in _run_requests(jobs, fmt, workers, timeout, retries, backoff, progress).items():
            reasons[row] = why
        summary = _write_outputs(out_dir, frame, locs, reasons, settings)
        summary.update({"n_already_there": n_before, "n_fetched": len(jobs) - sum(1 for r, *_ in jobs if reasons[r]),
                        "seconds": round(time.perf_counter() - t0, 3)})
        write_json(out_dir / _SUMMARY, summary)
    return summary


def _write_outputs(out_dir: Path, frame: pd.DataFrame, locs: list[str], reasons: np.ndarray, settings: dict) -> dict:
    """Write catalog.parquet (the galaxies with a cutout) and failed.csv (the others); return the counts."""
    ok = reasons == ""
    carried = [c for c in frame.columns if c not in ("id_str", "ra", "dec", "file_loc", "image")]
    table = pd.DataFrame({"id_str": frame["id_str"].to_numpy()[ok], "file_loc": np.asarray(locs, dtype=object)[ok],
                          "ra": frame["ra"].to_numpy()[ok], "dec": frame["dec"].to_numpy()[ok]})
    for col in carried:
        table[col] = frame[col].to_numpy()[ok]
    write_parquet(out_dir / _CATALOG, table)
    failed = pd.DataFrame({"id_str": frame["id_str"].to_numpy()[~ok], "ra": frame["ra"].to_numpy()[~ok],
                           "dec": frame["dec"].to_numpy()[~ok], "reason": reasons[~ok]})
    write_text(out_dir / _FAILED, failed.to_csv(index=False))
    if len(failed):
        log.warning("cutouts: %d of %d galaxies have no cutout, e.g. %s: %s; all listed in %s", len(failed), len(frame),
                    failed["id_str"].iat[0], failed["reason"].iat[0], out_dir / _FAILED)
    return {"settings": settings, "n_input": len(frame), "n_cutouts": int(ok.sum()), "n_failed": len(failed),
            "catalog": str((out_dir / _CATALOG).resolve()), "failed": str((out_dir / _FAILED).resolve()),
            "images": str((out_dir / "images").resolve())}
