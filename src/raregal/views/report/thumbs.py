"""Small preview images (thumbnails) of galaxy cutouts, for galleries, montages and tooltips.

JPEG/PNG are decoded by Pillow (JPEG in draft mode: decoded at reduced scale, much faster for
big cutouts), each mode to the picture the model sees (:func:`raregal.images.decode.pil_pixels`:
16-bit greyscale by its full range, transparency on black). FITS: one band is shown with
astropy.visualization's percentile interval and asinh stretch; a (3, H, W) g, r, z cube in the
colours the model sees it in, the one grz stretch of :func:`raregal.images.colour.fits_to_rgb` (so a FITS
cutout looks like the JPEG cutout of the same galaxy). Images are file paths or images held in
memory (:class:`raregal.images.decode.EncodedImage`, from a catalog with the images inside). An image
that cannot be read gives ``None`` plus the reason, never an exception, so one bad file cannot
stop a report.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

FITS_ENDINGS = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz")


def _fits_rgb(source):
    from astropy.visualization import AsinhStretch, PercentileInterval
    from PIL import Image

    from raregal.images.colour import fits_to_rgb, is_colour_cube
    from raregal.images.decode import read_fits_hdu

    data, header = read_fits_hdu(source)
    data = np.asarray(data, dtype=np.float64)  # float32 would flatten int64 or large offsets
    if is_colour_cube(data):  # g, r, z: the picture the model sees (rows already flipped north up)
        return Image.fromarray(fits_to_rgb(data, header), "RGB")
    else:
        band = data[0] if data.ndim == 3 else data
        if band.ndim != 2:
            raise ValueError(f"FITS image of shape {data.shape} is not (H, W) or (bands, H, W)")
        grey = np.nan_to_num((AsinhStretch() + PercentileInterval(99.5))(band), nan=0.0)
        rgb = np.stack([grey] * 3, axis=-1)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)[::-1])  # FITS rows run bottom-up


def load_preview(path, size: int = 96):
    """Read an image as an RGB ``PIL.Image`` fitting in ``size`` x ``size`` pixels.

    ``path``: a file path or an :class:`~raregal.images.decode.EncodedImage` (bytes in memory).
    Returns ``(image, "")`` or ``(None, reason)`` when the image is missing or unreadable.
    """
    from PIL import Image

    from raregal.images.decode import EncodedImage, image_kind, not_an_image, open_image, preview_rgb

    if path is None or (isinstance(path, float) and np.isnan(path)) or str(path) == "":
        return None, "no image path"
    if isinstance(path, EncodedImage):
        kind = image_kind(path)
        if not kind:
            return None, f"{path}: the image's bytes are {not_an_image(path.data)}"
    else:
        path = Path(path)
        if not path.is_file():
            return None, f"{path}: no such file"
        kind = "fits" if str(path).lower().endswith(FITS_ENDINGS) else "raster"
    try:
        if kind == "fits":
            im = _fits_rgb(path)
        else:
            with open_image(path) as src:
                src.draft("RGB", (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
                im = preview_rgb(src, path)
        # shrink large cutouts; enlarge small ones (64 px survey stamps) so they fill their tile
        scale = size / max(im.size)
        if scale != 1:
            shape = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
            im = im.resize(shape, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)
        if im.size != (size, size):  # pad non-square cutouts onto a dark square
            canvas = Image.new("RGB", (size, size), (0, 0, 0))
            canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
            im = canvas
        return im, ""
    except Exception as err:  # Pillow/astropy raise many kinds for corrupt files; report, go on
        return None, f"{path}: {type(err).__name__}: {err}"


def placeholder(size: int = 96, text: str = "no image"):
    """A grey tile with ``text`` for galaxies whose image could not be read."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size), (60, 60, 66))
    d = ImageDraw.Draw(im)
    d.line((0, 0, size, size), fill=(90, 90, 98), width=2)
    d.line((0, size, size, 0), fill=(90, 90, 98), width=2)
    w = d.textlength(text)
    d.rectangle(((size - w) / 2 - 3, size / 2 - 8, (size + w) / 2 + 3, size / 2 + 8), fill=(60, 60, 66))
    d.text(((size - w) / 2, size / 2 - 6), text, fill=(220, 220, 220))
    return im


def encode(im, fmt: str = "JPEG", quality: int = 88) -> bytes:
    """Encode a PIL image as JPEG (default) or PNG bytes."""
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def preview_of(sources, i: int, size: int = 96):
    """:func:`load_preview` of item ``i`` of ``sources`` (:func:`raregal.inputs.tables.image_sources`).

    Reading an image held inside a catalog can fail too (a changed shard, null bytes): that is
    ``(None, reason)`` like any unreadable file.
    """
    from raregal.errors import InputError

    try:
        source = sources[i]
    except InputError as err:
        return None, str(err)
    return load_preview(source, size)


def write_thumbnails(paths, out_names: list[Path], size: int = 96, workers: int = 4,
                     progress: bool = False) -> list[str]:
    """Write a JPEG thumbnail of each image in ``paths`` to the matching ``out_names`` path.

    ``paths``: file paths, or any :func:`raregal.inputs.tables.image_sources` sequence. Unreadable
    images are skipped (no file written). Returns one reason per input, "" when the thumbnail was
    written. Runs ``workers`` threads (Pillow releases the GIL while decoding).
    """
    def one(i):
        im, why = preview_of(paths, i, size)
        if im is not None:
            Path(out_names[i]).write_bytes(encode(im))
        return why

    jobs = range(len(out_names))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(one, jobs)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(jobs), desc="thumbnails", unit="img")
        return list(results)
