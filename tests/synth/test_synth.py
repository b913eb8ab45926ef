"""The synthetic survey: small-N renders, catalog, truth, votes, determinism, resume, CLI."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from raregal.cli import main
from raregal.errors import InputError
from raregal.inputs.gz_trees import ANSWERS, DEPENDENCIES, QUESTIONS, TREE
from raregal.synth import (ARTIFACT_CLASSES, BULK, CLASSES, DEFAULT_FRACTIONS, RARE_CLASSES, RARE_GALAXY_CLASSES,
                           answer_probabilities, assign_classes, class_counts, make_survey, render_galaxy,
                           render_scene, sample_galaxy, to_rgb)

DECALS = Path(__file__).resolve().parents[1] / "data" / "decals"
N, SIZE, SEED = 40, 32, 7


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    out = tmp_path_factory.mktemp("survey")
    catalog = make_survey(N, out, seed=SEED, size=SIZE, n_workers=1, progress=False, preview=True)
    return out, catalog


def _pixels(out, catalog):
    return np.stack([np.asarray(Image.open(out / f)) for f in catalog["file_loc"]])


def test_classes_and_proportions():
    assert len(RARE_GALAXY_CLASSES) >= 6 and len(ARTIFACT_CLASSES) >= 4
    assert CLASSES[0] == BULK and set(RARE_CLASSES) == set(DEFAULT_FRACTIONS)
    counts = class_counts(10_000)
    assert counts[BULK] == 9700 and all(counts[c] == 30 for c in RARE_CLASSES)
    assert counts[BULK] / 10_000 >= 0.97
    small = class_counts(12)  # tiny surveys still get every class once
    assert all(small[c] == 1 for c in RARE_CLASSES) and small[BULK] == 2
    assert class_counts(1000, {"ring": 0.01, "ghost_ring": 0})["ring"] == 10
    assert "ghost_ring" not in set(assign_classes(1000, 0, {"ghost_ring": 0}))
    labels = assign_classes(1000, 0)
    assert dict(pd.Series(labels).value_counts()) == {k: v for k, v in class_counts(1000).items() if v}
    assert not np.array_equal(labels, assign_classes(1000, 1))  # shuffled by the seed
    with pytest.raises(InputError, match="at least 11"):
        class_counts(10)
    with pytest.raises(InputError, match="unknown rare class 'rings'"):
        class_counts(100, {"rings": 0.1})


def test_render_every_class_shape_dtype_determinism():
    for cls in CLASSES:
        img = render_galaxy(cls, seed=1, index=3, size=SIZE)
        assert img.shape == (3, SIZE, SIZE) and img.dtype == np.float32 and np.isfinite(img).all()
        np.testing.assert_array_equal(img, render_galaxy(cls, seed=1, index=3, size=SIZE))
        assert not np.array_equal(img, render_galaxy(cls, seed=2, index=3, size=SIZE))
        rgb = to_rgb(img)
        assert rgb.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8


def test_rare_classes_are_populations():
    for cls in RARE_CLASSES:
        infos = [sample_galaxy(cls, 0, i)[1] for i in range(6)]
        for key in ("mag_r", "pa_deg"):
            values = [i[key] for i in infos if not np.isnan(i[key])]
            assert len(set(np.round(values, 6))) == len(values), (cls, key)


def test_colour_stretch_works_on_surface_brightness():
    # the same galaxy, noiseless, at binned and native pixels: same brightness where it is flat
    binned = to_rgb(render_galaxy("bulk", 0, 1, size=32, noise=False)).astype(float)
    native = to_rgb(render_galaxy("bulk", 0, 1, size=64, pixel_scale=0.262, noise=False), 0.262).astype(float)
    ring_b = binned[16, 8:12].mean()   # 4-6'' from the centre along a row
    ring_n = native[32, 16:24].mean()
    assert abs(ring_b - ring_n) < 0.1 * ring_b + 3


def test_missing_band_is_empty():
    scene, info = sample_galaxy("missing_band", 0, 0)
    img = render_scene(scene)
    assert info["artifact"] > 0.3
    assert np.all(img[scene["missing_band"]] == 0) and img.std(axis=(1, 2)).min() == 0


def test_noiseless_flux_matches_magnitudes():
    # a lone Sersic galaxy in the middle of a big stamp: the drawn flux is the catalog flux
    scene = dict(size=96, pixel_scale=0.262, seed=0, psf_fwhm=[1.3, 1.2, 1.1], sky_sigma=[0.01] * 3,
                 components=[dict(kind="sersic", n=1.0, r50=1.0, q=0.7, pa=30.0, mag_r=17.5, g_r=0.6, r_z=0.4)])
    flux = render_scene(scene, noise=False).sum(axis=(1, 2))
    expected = 10 ** (-0.4 * (np.array([17.5 + 0.6, 17.5, 17.5 - 0.4]) - 22.5))
    np.testing.assert_allclose(flux, expected, rtol=0.02)


def test_catalog_columns_files_and_counts(survey):
    out, catalog = survey
    assert len(catalog) == N and catalog["id_str"].is_unique
    for col in ["id_str", "file_loc", "true_class", "subtype", "mag_r", "r50_arcsec", "n_arms", "bar",
                "psf_fwhm_r", "sky_sigma_r", "scene_json", *ANSWERS]:
        assert col in catalog, col
    assert all(not Path(f).is_absolute() for f in catalog["file_loc"])
    on_disk = pd.read_parquet(out / "catalog.parquet")
    pd.testing.assert_frame_equal(on_disk, catalog)
    assert dict(catalog["true_class"].value_counts()) == class_counts(N)
    pixels = _pixels(out, catalog)
    assert pixels.shape == (N, SIZE, SIZE, 3) and pixels.dtype == np.uint8
    config = json.loads((out / "synth_config.json").read_text())
    assert config["seed"] == SEED and config["size"] == SIZE
    with Image.open(out / "preview.png") as im:
        assert im.format == "PNG" and im.size[0] > 400


def test_votes_follow_the_tree(survey):
    _, catalog = survey
    totals = catalog["smooth-or-featured_total-votes"]
    assert totals.between(5, 40).all()
    assert (catalog[ANSWERS] >= 0).all().all() and all(catalog[a].dtype.kind == "i" for a in ANSWERS)
    for q in TREE:
        answered = catalog[list(q.answers)].sum(axis=1)
        asked = totals if DEPENDENCIES[q.name] is None else catalog[DEPENDENCIES[q.name]]
        np.testing.assert_array_equal(answered, asked, err_msg=q.name)
        np.testing.assert_array_equal(answered, catalog[f"{q.name}_total-votes"])


def test_votes_follow_morphology():
    def frac(probs, q, a):
        return probs[q][QUESTIONS[q].index(a)]

    ell = answer_probabilities(sample_galaxy("bulk", 0, 0)[1] | {"featured": 0.05})
    sp = answer_probabilities(sample_galaxy("one_armed_spiral", 0, 0)[1])
    art = answer_probabilities(sample_galaxy("satellite_trail", 0, 0)[1])
    merger = answer_probabilities(sample_galaxy("tidal_merger", 0, 0)[1])
    assert frac(ell, "smooth-or-featured", "smooth") > 0.8
    assert frac(sp, "has-spiral-arms", "yes") > 0.8 and frac(sp, "spiral-arm-count", "1") > 0.5
    assert frac(art, "smooth-or-featured", "artifact") > 0.5
    assert frac(merger, "merging", "merger") > 0.7
    for probs in (ell, sp, art, merger):
        assert all(np.isclose(p.sum(), 1.0) and (p >= 0).all() for p in probs.values())


def test_scene_json_redraws_the_cutout(survey):
    out, catalog = survey
    row = catalog.iloc[5]
    scene = json.loads(row["scene_json"])
    rgb = to_rgb(render_scene(scene), scene["pixel_scale"])
    np.testing.assert_array_equal(rgb, np.asarray(Image.open(out / row["file_loc"])))


def test_same_seed_same_pixels_any_workers_and_resume(survey, tmp_path):
    out, catalog = survey
    again = make_survey(N, tmp_path, seed=SEED, size=SIZE, n_workers=2, chunk_size=7, progress=False)
    pd.testing.assert_frame_equal(again, catalog)
    np.testing.assert_array_equal(_pixels(tmp_path, again), _pixels(out, catalog))
    # resume: a lost cutout is re-rendered identically, the others are kept
    lost = tmp_path / again["file_loc"][3]
    lost.unlink()
    make_survey(N, tmp_path, seed=SEED, size=SIZE, n_workers=1, progress=False)
    np.testing.assert_array_equal(np.asarray(Image.open(lost)), np.asarray(Image.open(out / again["file_loc"][3])))
    with pytest.raises(InputError, match="different settings"):
        make_survey(N, tmp_path, seed=SEED + 1, size=SIZE, n_workers=1, progress=False)
    other = make_survey(N, tmp_path / "other", seed=SEED + 1, size=SIZE, n_workers=1, progress=False)
    assert not np.array_equal(_pixels(tmp_path / "other", other), _pixels(out, catalog))


def test_cli_jpeg_and_errors(tmp_path, capsys):
    rc = main(["synth", "--n-galaxies", "12", "--out", str(tmp_path / "s"), "--seed", "3", "--size", "24",
               "--format", "jpg", "--workers", "1", "--class-fraction", "ring=0.1", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "12 galaxies" in printed and "ring" in printed and "bulk" in printed
    catalog = pd.read_parquet(tmp_path / "s" / "catalog.parquet")
    assert (catalog["true_class"] == "ring").sum() == 1 and catalog["file_loc"].str.endswith(".jpg").all()
    with Image.open(tmp_path / "s" / catalog["file_loc"][0]) as im:
        assert im.format == "JPEG" and im.size == (24, 24) and im.mode == "RGB"
    assert main(["synth", "--n-galaxies", "5", "--out", str(tmp_path / "t")]) == 2
    assert "at least 11" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_looks_like_legacy_surveys_cutouts():
    """Sky level, sky noise and galaxy colours of bulk cutouts fall in the range of the real
    Galaxy Zoo DECaLS cutouts in tests/data/decals (dark grey grainy sky, beige galaxies)."""
    real = [np.asarray(Image.open(DECALS / f).convert("RGB")).astype(float)
            for f in pd.read_csv(DECALS / "catalog.csv")["file_loc"]]
    bright = [i for i in range(40) if sample_galaxy("bulk", 0, i)[1]["subtype"] in ("elliptical", "spiral")][:12]
    ours = [to_rgb(render_galaxy("bulk", 0, i)).astype(float) for i in bright]

    def sky(imgs):  # per image: median and spread of the darkest half of a corner
        out = []
        for a in imgs:
            k = a.shape[0] // 6
            corner = a[:k, :k].reshape(-1, 3)
            out.append((np.median(corner), np.percentile(corner, 84) - np.percentile(corner, 16)))
        return np.median(np.array(out), axis=0)

    (real_level, real_spread), (our_level, our_spread) = sky(real), sky(ours)
    assert 0.6 * real_level <= our_level <= 1.6 * real_level
    assert 0.4 * real_spread <= our_spread <= 2.5 * real_spread
    # galaxies are not tinted: their centres are near-grey, red >= blue, as in the real ones
    for a in ours + real:
        c = a.shape[0] // 2
        centre = a[c - 2:c + 2, c - 2:c + 2].reshape(-1, 3).mean(axis=0)
        assert centre[0] >= 0.85 * centre[2] and np.ptp(centre) < 0.3 * centre.max(), centre
