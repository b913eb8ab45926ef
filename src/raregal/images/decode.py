"""Decoding image files to the picture a person would see, keeping their dynamic range.

Every Pillow mode is decoded by :func:`pil_pixels`, never through a conversion that loses the
image's dynamic range (as ``Image.convert("RGB")`` does: it clips 16-bit greyscale to white and
drops alpha). This module needs no torch, so reports and the explorer can use it.

* 8-bit modes give uint8 pixels: ``L`` and ``RGB`` as they are; ``1`` (bilevel) as 0/255;
  ``P`` through its palette; ``RGBX``, ``YCbCr``, ``HSV``, ``LAB`` by Pillow's conversion to RGB;
  ``CMYK`` by Pillow's plain formula (R = (255 - C)(255 - K) / 255, likewise G, B). An embedded
  ICC profile is not applied (a warning says so): survey cutouts are not print separations,
  Pillow's own CMYK JPEGs round-trip exactly this way, and ImageCms ships no CMYK profile to
  fall back on, so a colour-managed path could not be relied on or tested.
* Transparency (``LA``, ``RGBA``, ``PA``, a palette or colour key with transparency, and the
  premultiplied ``La``/``RGBa``) is composited on **black**, the sky background: a transparent
  pixel is empty sky, never the colour hidden under it.
* 16-bit greyscale (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``; Pillow opens 16-bit grey PNGs so)
  gives float32 scaled by the type's full range, ``/ 65535``, so that it equals its 8-bit
  equivalent to within 1/255 and no value is clipped. 16-bit *colour* PNGs are opened by Pillow
  as 8-bit ``RGB``/``RGBA`` (it keeps the high byte of each sample; 16-bit grey with alpha also
  becomes ``RGBA``): their dynamic range survives, their extra precision does not.
* 32-bit integer ``I``: values within 0..65535 are a 16-bit image Pillow widened and are
  scaled by ``/ 65535``; others are stretched from their minimum to their maximum. Float ``F``:
  finite values already in 0..1 are kept; others are stretched from their finite minimum to
  maximum; NaN and inf become 0 (black). Both are guesses about files that carry no scale, so
  each guess, and each NaN, logs a warning (once per process and kind).
* Any other mode raises :class:`~raregal.errors.InputError` naming the file; of a multi-frame
  file (animated PNG) the first frame is read, with a warning.
* FITS: astropy applies BZERO/BSCALE (so unsigned 16-bit and scaled integers arrive as their
  physical values) and BLANK (as NaN); every BITPIX (8, 16, 32, 64, -32, -64) is clipped and
  scaled in a float type wide enough to hold its dynamic range (float64 beyond 16-bit integers
  and float32), so large offsets, int64 and float64 beyond float32's range keep their contrast.

:func:`pil_pixels` is the one decoder of Pillow images: :func:`raregal.images.dataset.load_image` (the
model's input) and :func:`raregal.views.report.thumbs.load_preview` (thumbnails) both go through it, and
:func:`read_fits_hdu` is the one FITS reader of both.

An image is given either as a file path or as an :class:`EncodedImage`: the bytes of an image
file held in memory (an image embedded in a Parquet catalog, :mod:`raregal.inputs.shards`). A path's
format is told by its ending; the format of bytes by their first bytes (JPEG ``FF D8 FF``, PNG
``89 50 4E 47``, FITS ``SIMPLE  =``, also after gzip), so an HTML error page or a
truncated download is refused by :func:`image_kind` instead of being read as a picture.
"""

from __future__ import annotations

import io
import logging
import os
import re
from typing import NamedTuple

import numpy as np

from raregal.errors import InputError

log = logging.getLogger("raregal")

#: Modes whose pixels are used as they are (the fast path), and 8-bit modes Pillow converts to RGB faithfully.
_PLAIN_MODES = ("RGB", "L")
_CONVERTED_MODES = ("P", "RGBX", "YCbCr", "HSV", "LAB", "CMYK")
_ALPHA_MODES = ("LA", "RGBA", "PA")
_PREMULTIPLIED_MODES = ("La", "RGBa")
_warned: set[str] = set()

#: File name endings of each format (case-insensitive).
RASTER_SUFFIXES = (".jpg", ".jpeg", ".png")
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz")
_MAGIC = ((b"\xff\xd8\xff", "raster"), (b"\x89PNG\r\n\x1a\n", "raster"), (b"SIMPLE  =", "fits"))


class EncodedImage(NamedTuple):
    """The bytes of one image file held in memory instead of on disk (an image embedded in a catalog).

    ``data``: the file's bytes (JPEG, PNG or FITS; FITS may be gzipped); ``name``: how messages name
    the image (``shard.parquet row 12 (id J1234)``); ``hint``: the file name it had, if any (the
    Hugging Face Image feature's ``path``), kept for messages.
    """

    data: bytes
    name: str
    hint: str = ""

    def __str__(self) -> str:
        return self.name


def image_kind(source) -> str:
    """``"fits"``, ``"raster"`` (JPEG/PNG) or ``""`` (not an image raregal reads) for a path or :class:`EncodedImage`.

    A path is told by its ending, an EncodedImage by its first bytes (see the module docstring).
    """
    if isinstance(source, EncodedImage):
        head = bytes(source.data[:16])
        if head.startswith(b"\x1f\x8b"):  # gzip: a gzipped FITS file?
            head = _gunzip(source.data, 16)
        return next((k for magic, k in _MAGIC if head.startswith(magic)), "")
    name = str(source).lower()
    return "fits" if name.endswith(FITS_SUFFIXES) else "raster" if name.endswith(RASTER_SUFFIXES) else ""


def _gunzip(data: bytes, limit: int = -1) -> bytes:
    """The first ``limit`` (all, for -1) decompressed bytes of gzip ``data``; b"" when it is not gzip."""
    import zlib

    try:
        return zlib.decompressobj(wbits=31).decompress(bytes(data), max(limit, 0))
    except zlib.error:
        return b""


def not_an_image(data: bytes) -> str:
    """Why ``data`` is not an image file, in words (an HTML page and its title, or its first bytes)."""
    head = bytes(data[:2048])
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")) or b"<html" in text[:512]:
        title = re.search(rb"<title[^>]*>(.*?)</title>", head, re.I | re.S)
        said = f" (title {title.group(1).decode('utf-8', 'replace').strip()[:80]!r})" if title else ""
        return f"an HTML page{said}, not an image"
    if not data:
        return "empty (0 bytes), not an image"
    return f"not a JPEG, PNG or FITS image (it starts with {head[:24]!r})"


def open_image(source):
    """Open a JPEG/PNG path or :class:`EncodedImage` with Pillow (use as a context manager)."""
    from PIL import Image

    return Image.open(io.BytesIO(source.data) if isinstance(source, EncodedImage) else source)


def _warn_once(kind: str, message: str) -> None:
    """Log ``message`` as a warning the first time ``kind`` comes up in this process."""
    if kind not in _warned:
        _warned.add(kind)
        log.warning("%s (warned once; other files like it are read the same way)", message)


def _has_transparency(im) -> bool:
    """True when a Pillow image carries alpha: an alpha band, a transparency key or an RGBA palette."""
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        return True
    return im.mode == "P" and getattr(im.palette, "mode", "RGB") == "RGBA"


def _on_black(pixels: np.ndarray) -> np.ndarray:
    """Composite uint8 (H, W, C + 1) pixels, alpha last, on black: (H, W, C) uint8, rounded."""
    colour = pixels[..., :-1].astype(np.uint16)
    alpha = pixels[..., -1:].astype(np.uint16)
    return ((colour * alpha + 127) // 255).astype(np.uint8)


def _stretch(values: np.ndarray) -> np.ndarray:
    """Map the finite values of ``values`` linearly onto 0..1 (a constant image becomes 0; NaN/inf 0)."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    lo, hi = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 0.0)
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    return np.where(finite, scaled, 0.0).astype(np.float32)


def _wide_grey(im, path) -> np.ndarray:
    """Pixels of a 16-bit, 32-bit integer or float greyscale image as float32 (H, W) in 0..1."""
    values = np.asarray(im)
    if "transparency" in im.info:
        _warn_once(f"transparency-{im.mode}", f"{path}: the transparent value of a {im.mode} image is ignored")
    if im.mode.startswith("I;16"):
        info = np.iinfo(values.dtype)
        return ((values.astype(np.float32) - info.min) / (info.max - info.min)).astype(np.float32)
    finite = np.isfinite(values)
    if not finite.all():
        _warn_once(f"nonfinite-{im.mode}", f"{path}: {im.mode} image holds NaN or inf, shown as 0 (black)")
    seen = values[finite]
    if im.mode == "I" and seen.size and 0 <= seen.min() and seen.max() <= 65535:
        _warn_once("I-16", f"{path}: 32-bit integer image with values in 0..65535, read as 16-bit (/ 65535)")
        return (values.astype(np.float32) / 65535.0).astype(np.float32)
    if im.mode == "F" and seen.size and 0 <= seen.min() and seen.max() <= 1:
        return np.where(finite, values, 0.0).astype(np.float32)
    _warn_once(f"stretch-{im.mode}", f"{path}: {im.mode} image carries no scale; stretched from its minimum "
               "to its maximum")
    return _stretch(values)


def pil_pixels(im, path: str | os.PathLike = "") -> np.ndarray:
    """Decode an open Pillow image to the picture a person would see, without losing its dynamic range.

    Returns (H, W, 3) for colour or (H, W, 1) for grey: uint8 (0..255) from 8-bit modes, float32
    (0..1) from 16-bit, 32-bit and float modes. The rules for each mode are in the module
    docstring. Raises InputError naming ``path`` for a mode it cannot decode faithfully.
    """
    mode = im.mode
    if getattr(im, "n_frames", 1) > 1:
        _warn_once("frames", f"{path}: image has {im.n_frames} frames; only the first is read")
    if mode in _PLAIN_MODES and "transparency" not in im.info:
        pixels = np.asarray(im)
    elif mode in _PREMULTIPLIED_MODES:
        pixels = np.asarray(im)[..., :-1]  # colour already multiplied by alpha: on black as it is
    elif mode in ("LA", "RGBA"):
        pixels = _on_black(np.asarray(im))
    elif mode in ("1", "L", "RGB", "P", "PA") and _has_transparency(im):
        pixels = _on_black(np.asarray(im.convert("RGBA")))  # Pillow applies the key or the palette's alpha
        pixels = pixels[..., :1] if mode in ("1", "L") else pixels
    elif mode == "1":
        pixels = np.asarray(im.convert("L"))
    elif mode in _CONVERTED_MODES:
        if mode == "CMYK" and im.info.get("icc_profile"):
            _warn_once("cmyk-icc", f"{path}: CMYK image's ICC profile is not applied (Pillow's plain CMYK->RGB)")
        pixels = np.asarray(im.convert("RGB"))
    elif mode.startswith("I;16") or mode in ("I", "F"):
        pixels = _wide_grey(im, path)
    else:
        raise InputError(f"{path}: Pillow image mode {mode!r} is not supported; save it as 8- or 16-bit "
                         "greyscale or RGB(A)")
    return pixels if pixels.ndim == 3 else pixels[:, :, None]


def luminance(pixels: np.ndarray) -> np.ndarray:
    """One grey plane (H, W, 1) of (H, W, 1|3) pixels: Pillow's ITU-R 601 luma for uint8 colour."""
    if pixels.shape[2] == 1:
        return pixels
    if pixels.dtype == np.uint8:
        from PIL import Image

        return np.asarray(Image.fromarray(pixels, "RGB").convert("L"))[:, :, None]
    return (pixels @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None].astype(np.float32)


def preview_rgb(im, path: str | os.PathLike = ""):
    """An open Pillow image as the 8-bit RGB ``PIL.Image`` of :func:`pil_pixels` (for thumbnails)."""
    from PIL import Image

    if im.mode == "RGB" and "transparency" not in im.info:
        return im.convert("RGB")
    pixels = pil_pixels(im, path)
    if pixels.dtype != np.uint8:
        pixels = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(np.repeat(pixels, 3 // pixels.shape[2], axis=2)), "RGB")


def work_dtype(dtype: np.dtype) -> type:
    """float32 where it holds every value of ``dtype`` exactly (up to 16-bit integers, float16/32), else float64."""
    dtype = np.dtype(dtype)
    exact = dtype.kind == "f" and dtype.itemsize <= 4 or dtype.kind in "iub" and dtype.itemsize <= 2
    return np.float32 if exact else np.float64


def read_fits_hdu(source) -> tuple[np.ndarray, object]:
    """The squeezed data and the header of the first image HDU that has data, as astropy returns them.

    ``source``: a path or an :class:`EncodedImage`. astropy applies BZERO/BSCALE (unsigned and
    scaled integers arrive as their physical values) and turns the BLANK pixels of integer data
    into NaN. Raises InputError when there is no image.
    """
    from astropy.io import fits

    if isinstance(source, EncodedImage):  # astropy reads gzip from files only: decompress bytes here
        data = source.data if not bytes(source.data[:2]) == b"\x1f\x8b" else _gunzip(source.data)
        opened = io.BytesIO(data)
    else:
        opened = source
    with fits.open(opened, memmap=False) as hdul:
        hdu = next((h for h in hdul if getattr(h, "data", None) is not None and h.is_image), None)
        if hdu is None:
            raise InputError(f"{source}: FITS file has no image HDU with data")
        data, header = np.asarray(hdu.data), hdu.header.copy()
    return np.squeeze(data), header


def read_fits_data(source) -> np.ndarray:
    """The squeezed data of the first image HDU that has data (see :func:`read_fits_hdu`)."""
    return read_fits_hdu(source)[0]
