"""Reading images with Zoobot's conventions (jpg/png as RGB in 0..1; FITS one band, arcsinh-scaled)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from raregal.inputs.tables import read_catalog
from raregal.errors import InputError
from raregal.images.dataset import (ImageDataset, collate_images, eval_transform, load_image, resize, scale_fits,
                            train_transform)

DECALS = Path(__file__).resolve().parents[1] / "data" / "decals" / "catalog.csv"


def test_png_is_rgb_scaled_to_unit_range(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.dtype == torch.float32 and img.shape == (3, 20, 30)
    np.testing.assert_allclose(img.permute(1, 2, 0).numpy(), rgb / 255.0, atol=1e-7)


def test_greyscale_and_rgba_files_become_rgb(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.shape == (3, 8, 8)
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    np.testing.assert_allclose(img[0].numpy(), grey / 255.0, atol=1e-7)
    Image.fromarray(np.full((4, 4, 4), 200, np.uint8), mode="RGBA").save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png").shape == (3, 4, 4)
    assert load_image(tmp_path / "g.png", channels=1).shape == (1, 8, 8)


def test_jpeg_reads_close_to_what_was_written(tmp_path):
    rgb = np.full((16, 16, 3), (10, 120, 240), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    img = load_image(tmp_path / "a.jpg")
    np.testing.assert_allclose(img.mean(dim=(1, 2)).numpy(), np.array([10, 120, 240]) / 255.0, atol=0.02)


def test_fits_band_is_clipped_scaled_and_arcsinh_stretched(tmp_path):
    from astropy.io import fits

    rng = np.random.default_rng(1)
    flux = rng.normal(0, 1, size=(25, 25)).astype(np.float32)
    flux[12, 12] = 500.0  # a bright core the 99.7th percentile clips
    flux[0, 0] = np.nan
    fits.PrimaryHDU(flux).writeto(tmp_path / "g.fits")
    img = load_image(tmp_path / "g.fits")
    assert img.shape == (3, 25, 25) and torch.equal(img[0], img[2])
    finite = flux[np.isfinite(flux)]
    lo, hi = np.percentile(finite, 0), np.percentile(finite, 99.7)
    expected = np.arcsinh((np.clip(np.nan_to_num(flux, nan=lo), lo, hi) - lo) / (hi - lo))
    np.testing.assert_allclose(img[0].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert img.max() == pytest.approx(np.arcsinh(1.0), rel=1e-6)  # the clipped core
    assert img[0, 0, 0] == 0.0


def test_fits_cube_takes_one_band_and_extension_hdus_are_found(tmp_path):
    from astropy.io import fits

    cube = np.stack([np.full((6, 6), 1.0), np.arange(36.0).reshape(6, 6)]).astype(np.float32)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cube)]).writeto(tmp_path / "c.fits")
    band0 = load_image(tmp_path / "c.fits")
    assert band0.shape == (3, 6, 6) and float(band0.max()) == 0.0  # a constant band
    with pytest.raises(InputError, match="2 planes, no band 5"):
        load_image(tmp_path / "c.fits", fits_band=5)
    band1 = load_image(tmp_path / "c.fits", fits_band=1)[0].numpy()
    hi = np.percentile(cube[1], 99.7)
    np.testing.assert_allclose(band1, np.arcsinh(np.clip(cube[1] / hi, 0, 1)), rtol=1e-5)
    np.testing.assert_allclose(scale_fits(cube[1]), band1)


def test_bad_files_raise_input_error_naming_the_path(tmp_path):
    with pytest.raises(InputError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(InputError, match="broken.png"):
        load_image(tmp_path / "broken.png")
    (tmp_path / "x.tiff").write_bytes(b"II*\x00")
    with pytest.raises(InputError, match="unknown image type"):
        load_image(tmp_path / "x.tiff")
    (tmp_path / "broken.fits").write_bytes(b"SIMPLE  = nonsense")
    with pytest.raises(InputError, match="broken.fits"):
        load_image(tmp_path / "broken.fits")


def test_resize_and_augmentation_keep_the_model_input_shape():
    img = torch.rand(3, 50, 40)
    assert resize(img, 32).shape == (3, 32, 32)
    assert eval_transform(32)(img).shape == (3, 32, 32)
    aug = train_transform(32)
    torch.manual_seed(0)
    a = aug(img)
    torch.manual_seed(0)
    b = aug(img)
    torch.manual_seed(1)
    c = aug(img)
    assert a.shape == (3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)


def test_augmentation_rotates():
    img = torch.zeros(1, 9, 9)
    img[0, 4, :] = 1.0  # a horizontal bar through the centre: flips leave it, rotations turn it
    torch.manual_seed(3)
    views = [train_transform(9, rotation_degrees=180)(img) for _ in range(8)]
    assert any(not torch.allclose(v, img, atol=1e-3) for v in views)


def test_dataset_reports_unreadable_images_without_raising(tmp_path):
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"nope")
    ds = ImageDataset([tmp_path / "ok.png", tmp_path / "bad.png", tmp_path / "gone.png"], eval_transform(8),
                      labels=np.arange(6).reshape(3, 2))
    batch = collate_images([ds[i] for i in range(3)])
    assert batch["image"].shape == (1, 3, 8, 8) and batch["index"].tolist() == [0]
    assert batch["labels"].tolist() == [[0.0, 1.0]]
    assert [i for i, _ in batch["failed"]] == [1, 2]
    assert "bad.png" in batch["failed"][0][1] and "gone.png" in batch["failed"][1][1]


def test_real_decals_cutouts_read_as_424px_rgb():
    catalog = read_catalog(DECALS)
    for loc in catalog["file_loc"]:
        img = load_image(loc)
        assert img.shape == (3, 424, 424) and 0.0 <= float(img.min()) and float(img.max()) <= 1.0
        assert float(img.std()) > 0.01  # a real image, not blank
    assert eval_transform(224)(load_image(catalog["file_loc"][0])).shape == (3, 224, 224)


def test_rotated_training_views_have_no_empty_corners():
    img = torch.full((3, 32, 32), 0.5) + 0.01 * torch.rand(3, 32, 32)  # uniform sky
    torch.manual_seed(0)
    aug = train_transform(32, rotation_degrees=180)
    for _ in range(5):
        view = aug(img)
        assert view.shape == (3, 32, 32) and float(view.min()) > 0.45  # zero-filled corners would be 0
