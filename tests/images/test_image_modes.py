"""Every image mode Pillow can open, and FITS of every BITPIX, reads as its 8-bit RGB picture.

Each test draws one 32x32 test card as 8-bit RGB (the reference), writes it in another mode or
format in ``tmp_path``, reads it back with :func:`raregal.images.dataset.load_image` and compares it with
the reference. Transparent pixels are expected composited on black (empty sky). Pillow opens a file
by its content, not its name, so a TIFF named ``.png`` is how modes PNG cannot hold (``F``, ``I``,
``LAB``...) reach ``load_image`` here, as a misnamed file would in a user's catalog.
"""

from __future__ import annotations

import logging
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from raregal.images import decode as pixels
from raregal.errors import InputError
from raregal.images.dataset import ImageDataset, collate_images, eval_transform, load_image, scale_fits
from raregal.images.decode import pil_pixels

STEP = 1 / 255 + 1e-6  # one grey level: what 16 -> 8 bits may differ by


def card() -> np.ndarray:
    """The 8-bit RGB test card (32, 32, 3): red and green ramps over 0..255, a bright disk, a black square."""
    y, x = np.mgrid[0:32, 0:32]
    blue = np.where((x - 20) ** 2 + (y - 12) ** 2 < 36, 255, 40)
    blue[22:28, 4:10] = 0
    return np.dstack([x * 255 // 31, y * 255 // 31, blue]).astype(np.uint8)


def grey_card() -> np.ndarray:
    """The test card's luminance (32, 32) uint8, as Pillow computes it."""
    return np.array(Image.fromarray(card()).convert("L"))


def alpha_card() -> np.ndarray:
    """An alpha plane (32, 32) uint8: a diagonal ramp with a fully transparent and a fully opaque corner."""
    y, x = np.mgrid[0:32, 0:32]
    alpha = ((x + y) * 255 // 62).astype(np.uint8)
    alpha[:6, :6], alpha[-6:, -6:] = 0, 255
    return alpha


def on_black(pixels: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """What a person sees of ``pixels`` with ``alpha`` over a black sky, as float 0..255."""
    pixels = pixels.astype(np.float64)
    return pixels * (alpha[..., None] if pixels.ndim == 3 else alpha) / 255.0


def read(path, **kw) -> np.ndarray:
    """load_image as (H, W, C) float64 in 0..255."""
    return load_image(path, **kw).permute(1, 2, 0).numpy().astype(np.float64) * 255.0


def rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(grey, np.float64)[..., None], 3, axis=2)


def png16(path, samples: np.ndarray, colour_type: int) -> None:
    """Write a 16-bit PNG by hand (Pillow cannot write 16-bit colour): 0 grey, 2 RGB, 4 grey+alpha, 6 RGBA."""
    h, w = samples.shape[:2]
    rows = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


@pytest.fixture
def warnings_seen(caplog):
    """The warnings raregal logs during the test (each kind is warned once per process: reset that)."""
    pixels._warned.clear()
    logger = logging.getLogger("raregal")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.WARNING, logger="raregal")
    yield caplog
    logger.removeHandler(caplog.handler)
    pixels._warned.clear()


# --- 8-bit modes, no transparency --------------------------------------------------------------------------

def _palette(tmp_path):
    im = Image.fromarray(card()).quantize(64)
    im.save(tmp_path / "p.png")
    return tmp_path / "p.png", np.asarray(im.convert("RGB"))  # the palette's colours are the picture


def _tiff(mode):
    def write(tmp_path):
        Image.fromarray(card()).convert(mode).save(tmp_path / f"{mode}.png", format="TIFF")
        return tmp_path / f"{mode}.png", card()
    return write


def _jpeg(mode):
    def write(tmp_path):
        Image.fromarray(card()).convert(mode).save(tmp_path / f"{mode}.jpg", quality=95, subsampling=0)
        return tmp_path / f"{mode}.jpg", rgb(grey_card()) if mode == "L" else card()
    return write


EIGHT_BIT = {  # name: (writer returning (path, 8-bit RGB reference), max abs difference in grey levels)
    "RGB png": (lambda p: (Image.fromarray(card()).save(p / "c.png"), p / "c.png")[1:] + (card(),), 0),
    "L png": (lambda p: (Image.fromarray(grey_card()).save(p / "g.png"), p / "g.png")[1:] + (rgb(grey_card()),), 0),
    "1 png": (lambda p: (Image.fromarray(grey_card() > 127).save(p / "b.png"), p / "b.png")[1:]
              + (rgb(np.where(grey_card() > 127, 255, 0)),), 0),
    "P png": (_palette, 0),
    "YCbCr tiff": (_tiff("YCbCr"), 3),
    "LAB tiff": (_tiff("LAB"), 40),  # 8-bit a*, b* cannot hold the card's most saturated green
    "CMYK tiff": (_tiff("CMYK"), 0),
    "RGB jpeg": (_jpeg("RGB"), 40),
    "L jpeg": (_jpeg("L"), 40),
    "CMYK jpeg": (_jpeg("CMYK"), 40),
}


@pytest.mark.parametrize("name", EIGHT_BIT)
def test_8bit_modes_read_as_their_rgb_picture(tmp_path, name):
    write, levels = EIGHT_BIT[name]
    path, ref = write(tmp_path)
    got = read(path)
    assert got.shape == (32, 32, 3)
    diff = np.abs(got - ref)
    assert diff.max() <= levels + 1e-3, f"{name}: off by {diff.max():.1f} grey levels"
    assert diff.mean() <= min(levels, 3) + 1e-3  # lossy JPEG: close on average


@pytest.mark.parametrize("mode", ["RGBX", "HSV"])
def test_modes_no_file_format_keeps_are_decoded_to_rgb(mode):
    im = Image.fromarray(card()).convert(mode)
    got = pil_pixels(im)
    assert got.dtype == np.uint8 and got.shape == (32, 32, 3)
    assert np.abs(got.astype(int) - card()).max() <= (0 if mode == "RGBX" else 6)  # HSV holds 8-bit hue


# --- transparency: composited on black -----------------------------------------------------------------------

def _alpha_png(mode):
    def write(tmp_path):
        colour = card() if mode == "RGBA" else grey_card()[..., None]
        Image.fromarray(np.dstack([colour, alpha_card()]), mode).save(tmp_path / f"{mode}.png")
        ref = on_black(card() if mode == "RGBA" else rgb(grey_card()), alpha_card())
        return tmp_path / f"{mode}.png", ref
    return write


def _alpha_png16(colour_type):
    def write(tmp_path):
        colour = card() if colour_type == 6 else grey_card()[..., None]
        png16(tmp_path / "a16.png", np.dstack([colour, alpha_card()]).astype(np.uint16) * 257, colour_type)
        return tmp_path / "a16.png", on_black(card() if colour_type == 6 else rgb(grey_card()), alpha_card())
    return write


def _palette_with_transparent_index(tmp_path):
    im = Image.fromarray(card()).quantize(64)
    index = int(np.asarray(im)[0, 0])  # the corner's colour (black, also the square's) is made transparent
    im.save(tmp_path / "pt.png", transparency=index)
    ref = np.asarray(im.convert("RGB")) * (np.asarray(im) != index)[..., None]
    return tmp_path / "pt.png", ref


def _palette_with_alpha(tmp_path):
    im = Image.fromarray(np.dstack([card(), alpha_card() // 64 * 85])).quantize(200)  # an RGBA palette
    im.save(tmp_path / "pa.png")
    four = np.asarray(im.convert("RGBA"))
    return tmp_path / "pa.png", on_black(four[..., :3], four[..., 3])


def _colour_key(mode):
    def write(tmp_path):
        pixels = card() if mode == "RGB" else grey_card()
        key = tuple(int(v) for v in pixels[31, 31]) if mode == "RGB" else int(pixels[31, 31])
        Image.fromarray(pixels).save(tmp_path / "key.png", transparency=key)
        hidden = np.all(pixels.reshape(32, 32, -1) == pixels[31, 31], axis=2)
        return tmp_path / "key.png", (card() if mode == "RGB" else rgb(grey_card())) * ~hidden[..., None]
    return write


def _pa_tiff(tmp_path):
    im = Image.fromarray(np.dstack([card(), alpha_card()])).quantize(64).convert("PA")
    im.save(tmp_path / "pa.png", format="TIFF")
    four = np.asarray(im.convert("RGBA"))
    return tmp_path / "pa.png", on_black(four[..., :3], four[..., 3])


TRANSPARENT = {
    "RGBA png": _alpha_png("RGBA"),
    "LA png": _alpha_png("LA"),
    "RGBA 16-bit png": _alpha_png16(6),
    "LA 16-bit png": _alpha_png16(4),
    "P png, transparent index": _palette_with_transparent_index,
    "P png, RGBA palette": _palette_with_alpha,
    "PA tiff": _pa_tiff,
    "RGB png, colour key": _colour_key("RGB"),
    "L png, colour key": _colour_key("L"),
}


@pytest.mark.parametrize("name", TRANSPARENT)
def test_transparent_pixels_are_composited_on_black_sky(tmp_path, name):
    path, ref = TRANSPARENT[name](tmp_path)
    got = read(path)
    assert got.shape == (32, 32, 3)
    assert np.abs(got - ref).max() <= 0.5 + 1e-3, f"{name}: off by {np.abs(got - ref).max():.1f} grey levels"


def test_premultiplied_modes_are_already_on_black():
    four = np.dstack([card(), alpha_card()])
    got = pil_pixels(Image.fromarray(four, "RGBA").convert("RGBa"))
    assert np.abs(got - on_black(card(), alpha_card())).max() <= 0.5 + 1e-3
    grey = np.dstack([grey_card(), alpha_card()])
    got = pil_pixels(Image.fromarray(grey, "LA").convert("La"))
    assert got.shape == (32, 32, 1) and np.abs(got[..., 0] - on_black(grey_card(), alpha_card())).max() <= 0.5 + 1e-3


# --- 16-bit, 32-bit and float greyscale keep their dynamic range -----------------------------------------------

def _wide(kind):
    def write(tmp_path):
        grey16 = grey_card().astype(np.uint16) * 257
        if kind == "I;16 png":
            Image.fromarray(grey16).save(tmp_path / "w.png")
        elif kind == "16-bit grey png by hand":
            png16(tmp_path / "w.png", grey16, 0)
        elif kind == "I;16B tiff":
            big_endian = Image.frombytes("I;16B", (32, 32), grey16.astype(">u2").tobytes())
            big_endian.save(tmp_path / "w.png", format="TIFF")  # (Pillow's convert("I;16B") clips to 255)
        elif kind == "I (16-bit ppm)":
            Image.fromarray(grey16).save(tmp_path / "w.png", format="PPM")
        elif kind == "F 0..1 tiff":
            Image.fromarray(grey_card().astype(np.float32) / 255).save(tmp_path / "w.png", format="TIFF")
        return tmp_path / "w.png"
    return write


WIDE = ["I;16 png", "16-bit grey png by hand", "I;16B tiff", "I (16-bit ppm)", "F 0..1 tiff"]


@pytest.mark.parametrize("kind", WIDE)
def test_wide_greyscale_equals_its_8bit_picture(tmp_path, kind):
    path = _wide(kind)(tmp_path)
    assert Image.open(path).mode in ("I;16", "I;16B", "I", "F")
    image = load_image(path, raw_uint8=True)
    assert image.dtype == torch.float32  # never handed back as uint8 to be divided by 255 again
    got = image.permute(1, 2, 0).numpy() * 255.0
    assert np.abs(got - rgb(grey_card())).max() <= 255 * STEP


def test_16bit_colour_png_is_read_at_8_bits_with_its_range(tmp_path):
    samples = np.minimum(card().astype(np.uint32) * 257 + 200, 65535)  # + 200: below one 8-bit level
    png16(tmp_path / "c16.png", samples, 2)
    assert np.abs(read(tmp_path / "c16.png") - card()).max() <= 255 * STEP


def test_a_full_range_16bit_image_is_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 32).round().astype(np.uint16).reshape(32, 32)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    got = load_image(tmp_path / "ramp.png")
    np.testing.assert_allclose(got[0].numpy(), ramp / 65535.0, atol=1e-6)
    assert float((got == 1.0).float().mean()) < 0.01 and 0.45 < float(got.mean()) < 0.55
    grey = load_image(tmp_path / "ramp.png", channels=1)
    assert grey.shape == (1, 32, 32) and torch.allclose(grey[0], got[0])


def test_scale_free_images_are_stretched_with_a_warning(tmp_path, warnings_seen):
    values = grey_card().astype(np.float32) * 40.0 - 3000.0  # no scale says what these mean
    values[0, 0] = np.nan
    Image.fromarray(values).save(tmp_path / "f.png", format="TIFF")
    got = load_image(tmp_path / "f.png")[0].numpy()
    finite = np.isfinite(values)
    expected = (values - values[finite].min()) / (values[finite].max() - values[finite].min())
    np.testing.assert_allclose(got[finite], expected[finite], atol=1e-6)
    assert got[0, 0] == 0.0 and "f.png" in warnings_seen.text and "stretched" in warnings_seen.text
    big = (grey_card().astype(np.int32) * 1_000_000) - 5
    Image.fromarray(big).save(tmp_path / "i.png", format="TIFF")
    span = float(grey_card().max() - grey_card().min())
    np.testing.assert_allclose(load_image(tmp_path / "i.png")[0].numpy(), (grey_card() - grey_card().min()) / span,
                               atol=1e-6)
    assert "i.png" in warnings_seen.text


def test_float_image_in_unit_range_keeps_its_values_around_nans(tmp_path, warnings_seen):
    values = grey_card().astype(np.float32) / 255
    values[5, :] = np.nan
    Image.fromarray(values).save(tmp_path / "f.png", format="TIFF")
    got = load_image(tmp_path / "f.png")[0].numpy()
    assert (got[5] == 0).all() and np.abs(np.delete(got, 5, 0) - np.delete(grey_card(), 5, 0) / 255).max() < 1e-6
    assert "NaN" in warnings_seen.text and "stretched" not in warnings_seen.text


def test_a_mode_that_cannot_be_decoded_is_an_input_error_naming_the_file():
    class Strange:
        mode, info, size = "BGR;15", {}, (2, 2)

    with pytest.raises(InputError, match="odd.png.*BGR;15"):
        pil_pixels(Strange(), "odd.png")


def test_only_the_first_frame_of_an_animation_is_read_with_a_warning(tmp_path, warnings_seen):
    frames = [Image.fromarray(card()), Image.fromarray(255 - card())]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    assert np.abs(read(tmp_path / "anim.png") - card()).max() < 1e-3
    assert "anim.png" in warnings_seen.text and "2 frames" in warnings_seen.text


# --- what callers get: uint8 fast path, luminance, the dataset, thumbnails --------------------------------

def test_uint8_fast_path_is_kept_for_8bit_files_only(tmp_path):
    Image.fromarray(card()).save(tmp_path / "c.png")
    Image.fromarray(grey_card()).save(tmp_path / "g.png")
    Image.fromarray(grey_card().astype(np.uint16) * 257).save(tmp_path / "w.png")
    fast = load_image(tmp_path / "c.png", raw_uint8=True)
    assert fast.dtype == torch.uint8 and torch.equal(fast.permute(1, 2, 0), torch.from_numpy(card()))
    assert load_image(tmp_path / "g.png", raw_uint8=True).dtype == torch.uint8
    luma = load_image(tmp_path / "c.png", channels=1, raw_uint8=True)
    assert luma.shape == (1, 32, 32) and torch.equal(luma[0], torch.from_numpy(grey_card()))
    ds = ImageDataset([tmp_path / "c.png", tmp_path / "w.png"], eval_transform(16), resize_uint8=True)
    batch = collate_images([ds[0], ds[1]])
    assert batch["failed"] == [] and batch["image"].dtype == torch.float32
    plain = ImageDataset([tmp_path / "c.png", tmp_path / "w.png"], eval_transform(16))
    reference = collate_images([plain[0], plain[1]])["image"]
    assert (batch["image"] - reference).abs().max() <= 2 / 255  # 16-bit not divided by 255 twice


def test_luminance_of_a_transparent_colour_image_is_of_its_picture(tmp_path):
    Image.fromarray(np.dstack([card(), alpha_card()]), "RGBA").save(tmp_path / "a.png")
    picture = np.round(on_black(card(), alpha_card())).astype(np.uint8)
    expected = np.asarray(Image.fromarray(picture).convert("L")) / 255.0
    got = load_image(tmp_path / "a.png", channels=1)
    assert got.shape == (1, 32, 32) and np.abs(got[0].numpy() - expected).max() <= STEP


def test_thumbnails_show_the_same_picture(tmp_path):
    from raregal.views.report.thumbs import load_preview

    Image.fromarray(grey_card().astype(np.uint16) * 257).save(tmp_path / "w.png")
    Image.fromarray(np.dstack([card(), alpha_card()]), "RGBA").save(tmp_path / "a.png")
    wide, why = load_preview(tmp_path / "w.png", size=32)
    assert why == "" and wide.mode == "RGB"
    assert np.abs(np.asarray(wide, np.float64) - rgb(grey_card())).max() <= 1
    alpha, _ = load_preview(tmp_path / "a.png", size=32)
    assert np.abs(np.asarray(alpha, np.float64) - on_black(card(), alpha_card())).max() <= 1


def test_fits_thumbnails_keep_the_contrast_of_wide_types(tmp_path):
    from astropy.io import fits

    from raregal.views.report.thumbs import load_preview

    fits.PrimaryHDU((grey_card().astype(np.int64) * 1_000_000 + 10**15)).writeto(tmp_path / "i64.fits")
    preview, why = load_preview(tmp_path / "i64.fits", size=32)
    assert why == "" and len(np.unique(np.asarray(preview))) > 100  # float32 would leave a blank square


# --- FITS: every BITPIX keeps the picture's dynamic range -------------------------------------------------

FLUX = grey_card().astype(np.float64)  # the test card as fluxes 0..255; each BITPIX stores an affine map of it
BITPIX = {  # name: (stored array, BITPIX astropy writes)
    "8 uint8": (lambda f: f.astype(np.uint8), 8),
    "8 int8 (BZERO -128)": (lambda f: (f - 128).astype(np.int8), 8),
    "16 int16": (lambda f: (f * 128 - 16384).astype(np.int16), 16),
    "16 uint16 (BZERO 32768)": (lambda f: (f * 257).astype(np.uint16), 16),
    "32 int32": (lambda f: (f * 8_000_000 - 1_000_000_000).astype(np.int32), 32),
    "32 uint32 (BZERO 2**31)": (lambda f: (f * 16_000_000 + 100).astype(np.uint32), 32),
    "64 int64, large offset": (lambda f: (f * 1_000_000 + 10**15).astype(np.int64), 64),
    "-32 float32": (lambda f: (f * 1e-3 - 5).astype(np.float32), -32),
    "-64 float64, large offset": (lambda f: f * 1e-3 + 1e9, -64),
    "-64 float64 beyond float32's range": (lambda f: f * 1e300, -64),
}


@pytest.mark.parametrize("name", BITPIX)
def test_fits_of_every_bitpix_reads_as_the_same_picture(tmp_path, name):
    from astropy.io import fits

    store, bitpix = BITPIX[name]
    fits.PrimaryHDU(store(FLUX)).writeto(tmp_path / "b.fits")
    assert fits.getheader(tmp_path / "b.fits")["BITPIX"] == bitpix
    got = load_image(tmp_path / "b.fits")
    assert got.dtype == torch.float32 and got.shape == (3, 32, 32)
    np.testing.assert_allclose(got[0].numpy(), scale_fits(FLUX), atol=1e-4)
    assert len(np.unique(got[0].numpy().round(4))) > 100  # the card's grey levels, not a few steps


def test_scaled_fits_with_blank_pixels_and_nans(tmp_path):
    from astropy.io import fits

    hdu = fits.PrimaryHDU((FLUX * 100).astype(np.int16))
    hdu.data[0, 0] = -32768
    hdu.header["BLANK"] = -32768
    hdu.header["BSCALE"], hdu.header["BZERO"] = 0.01, 5.0  # physical value = 0.01 * stored + 5
    hdu.writeto(tmp_path / "s.fits")
    expected_flux = FLUX + 5.0
    expected_flux[0, 0] = np.nan
    np.testing.assert_allclose(load_image(tmp_path / "s.fits")[0].numpy(), scale_fits(expected_flux), atol=1e-4)
    floats = FLUX.astype(np.float32)
    floats[3, :] = np.nan
    fits.PrimaryHDU(floats).writeto(tmp_path / "n.fits")
    got = load_image(tmp_path / "n.fits")[0].numpy()
    assert np.isfinite(got).all() and (got[3] == 0).all()
    fits.PrimaryHDU(np.full((4, 4), np.nan, np.float32)).writeto(tmp_path / "empty.fits")
    with pytest.raises(InputError, match="empty.fits.*no finite values"):
        load_image(tmp_path / "empty.fits")


def test_a_uint16_fits_cube_still_gives_the_chosen_plane(tmp_path):
    from astropy.io import fits

    cube = np.stack([FLUX, 255 - FLUX, FLUX / 2]).astype(np.uint16) * 257
    fits.PrimaryHDU(cube).writeto(tmp_path / "grz.fits")
    for band in range(3):
        got = load_image(tmp_path / "grz.fits", fits_band=band)
        np.testing.assert_allclose(got[1].numpy(), scale_fits(cube[band].astype(np.float64)), atol=1e-5)
