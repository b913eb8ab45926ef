"""Reading galaxy images with Zoobot's conventions, and the transforms applied before the model.

Zoobot (``galaxy_datasets``) reads a cutout as follows, and raregal does the same so that its
encoders see what Zoobot's encoders saw:

* **JPEG / PNG**: decoded with Pillow as RGB (greyscale files are repeated over the three
  channels), pixel values scaled from 0..255 to 0..1. No mean/std normalisation.
* **FITS**, one band (the first image HDU; of a cube of other than 3 planes, or when
  ``fits_band`` is given, plane ``fits_band``): clipped to its 0th..99.7th percentile, scaled to
  0..1 and passed through ``arcsinh(q * x)`` with ``q = 1`` (Zoobot's
  ``fits_to_jpg_like_scaling``). The band is repeated over the model's channels.
* **FITS, a (3, H, W) cube** of g, r, z fluxes in nanomaggies (a Legacy Surveys cutout,
  ``raregal cutouts --format fits``): made into the colour picture the survey's JPEG cutout
  of the galaxy shows, by the one grz stretch of :mod:`raregal.images.colour` (z, r, g -> R, G, B with
  scales 0.68, 1.0, 1.95; Lupton et al. asinh stretch, Q = 9, softening 0.45 nanomaggies at
  0.524 arcsec pixels; rows flipped so north is up), and then read like a JPEG.
* Then resized (bilinear, antialiased) to the model's square input size.

An image is a file path or an :class:`~raregal.images.decode.EncodedImage` (its bytes, from a catalog
with the images inside, :mod:`raregal.inputs.shards`); bytes are told apart by their first bytes, so
an HTML page or a truncated file is an error, never a picture.

Each Pillow mode is decoded by :func:`raregal.images.decode.pil_pixels` to the picture a person would
see, keeping its dynamic range: 16-bit greyscale scaled by its full range (``/ 65535``) and
returned as float, transparency composited on black (the sky), every other mode converted to
RGB; see :mod:`raregal.images.decode` for each mode. FITS of every BITPIX keep theirs too: astropy
applies BZERO/BSCALE and BLANK, and :func:`scale_fits` computes in float64 where float32
cannot hold the data.

Images are returned as float32 tensors of shape (C, H, W). Every failure raises
:class:`~raregal.errors.InputError` naming the file, so a caller can report it by id and skip it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from raregal.errors import InputError
from raregal.images.decode import (FITS_SUFFIXES, RASTER_SUFFIXES, EncodedImage, image_kind, luminance, not_an_image,
                     open_image, pil_pixels, read_fits_hdu, work_dtype)

__all__ = ["FITS_SUFFIXES", "RASTER_SUFFIXES", "EncodedImage", "ImageDataset", "collate_images", "eval_transform",
           "is_fits", "load_image", "resize", "scale_fits", "train_transform"]


def is_fits(path: str | os.PathLike) -> bool:
    """True when ``path`` names a FITS file by its ending."""
    return str(path).lower().endswith(FITS_SUFFIXES)


def scale_fits(data: np.ndarray, arcsinh_q: float = 1.0, percentile_min: float = 0.0,
               percentile_max: float = 99.7) -> np.ndarray:
    """Map one band of fluxes (H, W) to Zoobot's jpg-like dynamic range.

    Clip to the [``percentile_min``, ``percentile_max``] percentiles (NaN and inf ignored, then
    set to the lower clip), scale linearly to 0..1 and apply ``arcsinh(arcsinh_q * x)``.
    Computed in float64 for types float32 cannot hold exactly (32/64-bit integers, float64), so
    a large offset or values beyond float32's range keep their contrast.
    Returns float32 (H, W); a constant band becomes all zeros.
    """
    data = np.asarray(data)
    data = data.astype(work_dtype(data.dtype), copy=False)
    finite = np.isfinite(data)
    if not finite.any():
        raise InputError("FITS band holds no finite values")
    lo, hi = np.percentile(data[finite], [percentile_min, percentile_max])
    data = np.where(finite, data, lo)
    data = np.clip(data, lo, hi)
    span = hi - lo
    scaled = (data - lo) / span if span > 0 else np.zeros_like(data)
    return np.arcsinh(arcsinh_q * scaled).astype(np.float32)


def _fits_band(data: np.ndarray, band: int, name: str) -> np.ndarray:
    """Plane ``band`` of a cube, or the one band of an image: (H, W)."""
    if data.ndim == 3:
        if not 0 <= band < data.shape[0]:
            raise InputError(f"{name}: FITS cube has {data.shape[0]} planes, no band {band}")
        data = data[band]
    if data.ndim != 2:
        raise InputError(f"{name}: FITS image has shape {data.shape}; expected one band (H, W) or a cube")
    return data


def _read_raster(source, channels: int) -> np.ndarray:
    """A JPEG/PNG as (H, W, ``channels``) pixels: uint8 from 8-bit files, float32 0..1 from wider ones."""
    with open_image(source) as im:
        if channels != 3 and im.mode == "RGB" and "transparency" not in im.info:
            im = im.convert("L")  # the fast path of colour files read as luminance
        pixels = pil_pixels(im, source)
    return _to_channels(pixels, channels)


def _to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """(H, W, 1|3) pixels as (H, W, ``channels``): luminance unless 3 colour channels are asked for."""
    if channels != 3:
        pixels = luminance(pixels)
    if pixels.shape[2] != channels:
        pixels = np.repeat(pixels[:, :, :1], channels, axis=2)
    return pixels


def _kind(source) -> str:
    """The format of ``source`` (path or EncodedImage), raising InputError when it is not an image."""
    if source is None or (isinstance(source, float) and np.isnan(source)):
        raise InputError("no image is known for this galaxy (no file_loc)")
    if isinstance(source, EncodedImage):
        kind = image_kind(source)
        if not kind:
            raise InputError(f"{source}: the image's bytes are {not_an_image(source.data)}")
        return kind
    if not Path(source).is_file():
        raise InputError(f"{source}: no such image file")
    kind = image_kind(source)
    if not kind:
        raise InputError(f"{source}: unknown image type; use .jpg, .jpeg, .png or .fits")
    return kind


def load_image(source, channels: int = 3, fits_band: int | None = None,
               arcsinh_q: float = 1.0, raw_uint8: bool = False) -> torch.Tensor:
    """Read one image into a float32 tensor (``channels``, H, W) with values in 0..1.

    ``source``: a file path or an :class:`~raregal.images.decode.EncodedImage` (bytes in memory).
    With ``raw_uint8`` an 8-bit JPEG/PNG (and a colour FITS cube) comes back as its uint8 pixels
    (0..255) instead, so that it can be resized before the conversion to float (see
    :class:`ImageDataset`); 16-bit, 32-bit and float images and one-band FITS are float as
    always (check the dtype).

    JPEG/PNG are read as RGB (``channels=3``) or luminance (other ``channels``, repeated), each
    Pillow mode decoded by :func:`pil_pixels`. FITS: a (3, H, W) cube is the colour picture of its
    g, r, z planes (:func:`raregal.images.colour.fits_to_rgb`), then read like a JPEG; one band (or plane
    ``fits_band`` when given) is scaled by :func:`scale_fits` and repeated ``channels`` times.
    Raises InputError naming the image when it is missing, unreadable, of an unknown kind or of a
    mode that cannot be decoded faithfully.
    """
    name = str(source)
    kind = _kind(source)
    try:
        if kind == "fits":
            from raregal.images.colour import fits_to_rgb, is_colour_cube

            data, header = read_fits_hdu(source)
            if fits_band is None and is_colour_cube(data):
                pixels = _to_channels(fits_to_rgb(data, header), channels)
            else:
                band = scale_fits(_fits_band(data, fits_band or 0, name), arcsinh_q=arcsinh_q)
                return torch.from_numpy(band)[None].expand(channels, -1, -1).contiguous()
        else:
            pixels = _read_raster(source, channels)
        pixels = torch.from_numpy(np.require(pixels, requirements=["C", "W"])).permute(2, 0, 1)
        if pixels.dtype != torch.uint8:
            return pixels.contiguous()
        return pixels if raw_uint8 else pixels.float().div_(255.0)
    except InputError as err:
        raise err if name in str(err) else InputError(f"{name}: {err}") from err
    except Exception as err:  # Pillow and astropy raise many kinds for corrupt files
        raise InputError(f"{name}: cannot read image: {type(err).__name__}: {err}") from err


def resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (C, H, W) or (B, C, H, W) to ``size`` x ``size`` pixels, bilinear with antialiasing.

    Cutouts are square; a non-square image is stretched, not cropped.
    """
    from torchvision.transforms.v2 import functional as F

    if image.shape[-2:] == (size, size):
        return image
    return F.resize(image, [size, size], antialias=True)


def eval_transform(size: int):
    """The inference transform: resize to the model's input size (callable on (C, H, W))."""

    def transform(image: torch.Tensor) -> torch.Tensor:
        return resize(image, size)

    return transform


def train_transform(size: int, rotation_degrees: float = 180.0, flip_prob: float = 0.5):
    """Zoobot-style training augmentation: resize, random rotation, random horizontal/vertical flips.

    Galaxies have no preferred orientation, so any rotation and flip is a valid view. So that a
    rotated cutout has no empty corners (which the model would never see at inference), the image
    is reflection-padded by the corners' reach, rotated, and centre-cropped back to ``size``.
    Random numbers come from torch's global generator, which a seeded DataLoader sets per worker.
    """
    import math

    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import v2 as T

    pad = int(math.ceil(size * (math.sqrt(2) - 1) / 2)) + 1 if rotation_degrees else 0
    augment = T.Compose([
        *([T.Pad(pad, padding_mode="reflect")] if pad else []),
        T.RandomRotation(degrees=rotation_degrees, interpolation=InterpolationMode.BILINEAR),
        *([T.CenterCrop(size)] if pad else []),
        T.RandomHorizontalFlip(p=flip_prob),
        T.RandomVerticalFlip(p=flip_prob),
    ])

    def transform(image: torch.Tensor) -> torch.Tensor:
        return augment(resize(image, size))

    return transform


class ImageDataset(torch.utils.data.Dataset):
    """The images of a catalog, by row position, for a torch DataLoader.

    ``sources``: one image per row, as :func:`raregal.inputs.tables.image_sources` gives them: file
    paths, or the lazily read images of a catalog with the images inside
    (:class:`raregal.inputs.shards.EmbeddedImages`, read in the worker that needs them).

    Item ``i`` is a dict with ``index`` (i), ``image`` (transformed (C, H, W) tensor, or None
    when the image could not be read), ``error`` ('' or the reason) and, when ``labels`` (an
    (N, K) float array) is given, ``labels`` (K,). A bad image never raises here, so one
    corrupt file cannot stop a long run; :func:`collate_images` sets the failures aside.

    ``resize_uint8``: resize 8-bit JPEG/PNG pixels as uint8 and convert to float after (torchvision's
    uint8 antialiased resize is about twice as fast as on float; the result differs from the
    float path by at most about one grey level; 16-bit and float images arrive as float and are
    resized as such). Used where decoding limits throughput (GPU).
    """

    def __init__(self, sources, transform, channels: int = 3, labels: np.ndarray | None = None,
                 resize_uint8: bool = False):
        from raregal.inputs.shards import EmbeddedImages

        self.sources = sources if isinstance(sources, EmbeddedImages) else \
            [p if p is None or isinstance(p, EncodedImage) else str(p) for p in sources]
        self.transform = transform
        self.channels = channels
        self.resize_uint8 = resize_uint8
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> dict:
        item = {"index": i, "image": None, "error": ""}
        source = None
        try:
            source = self.sources[i]
            image = self.transform(load_image(source, channels=self.channels, raw_uint8=self.resize_uint8))
            item["image"] = image.float().div_(255.0) if image.dtype == torch.uint8 else image
        except InputError as err:
            item["error"] = str(err)
        except Exception as err:  # a transform failing on a strange image: report it, keep going
            item["error"] = f"{source if source is not None else f'row {i}'}: {type(err).__name__}: {err}"
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item


def collate_images(items: list[dict]) -> dict:
    """Batch :class:`ImageDataset` items: the readable ones stacked, the failures listed.

    Returns ``{"index": LongTensor (B,), "image": (B, C, H, W), "labels": (B, K) if present,
    "failed": [(index, reason), ...]}``; B may be 0.
    """
    good = [it for it in items if it["image"] is not None]
    batch = {
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "image": torch.stack([it["image"] for it in good]) if good else torch.empty(0),
        "failed": [(it["index"], it["error"]) for it in items if it["image"] is None],
    }
    if items and "labels" in items[0]:
        batch["labels"] = torch.stack([it["labels"] for it in good]) if good else torch.empty(0)
    return batch
