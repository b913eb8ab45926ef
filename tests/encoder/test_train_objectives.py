"""Training objectives: contrastive (no votes), hybrid (some votes), and their inputs, outputs and errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from raregal.inputs import gz_trees
from raregal.inputs.tables import read_catalog
from raregal.encoder.contrastive import nt_xent_loss, paired_views, view_transform, vicreg_loss
from raregal.encoder import load_model
from raregal.errors import InputError
from raregal.encoder.train import TrainConfig, train

ARCH = "test_efficientnet"


def galaxy_images(folder, n, seed=0, size=32):
    """``n`` distinct 32 px galaxies: an elliptical blob of random size, shape, angle, colour and
    position, half of them with a ring, a third with a companion. Returns their paths."""
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size].astype(float)
    paths = []
    for i in range(n):
        cx, cy = size / 2 + rng.uniform(-2, 2, 2)
        angle, q, r = rng.uniform(0, np.pi), rng.uniform(0.3, 1.0), rng.uniform(1.5, 6.0)
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        v = (-(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)) / q
        d = np.hypot(u, v)
        light = np.exp(-d / r)
        if i % 2:
            light += 0.7 * np.exp(-((d - rng.uniform(7, 11)) ** 2) / 2.0)
        if i % 3 == 0:
            ox, oy = rng.uniform(4, 28, 2)
            light += 0.8 * np.exp(-((xx - ox) ** 2 + (yy - oy) ** 2) / rng.uniform(1, 4))
        colour = rng.uniform(0.4, 1.0, 3)
        pix = light[..., None] * colour + rng.normal(0, 0.03, (size, size, 3))
        path = folder / "img" / f"g{i}.png"
        Image.fromarray(np.clip(255 * pix, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def vote_free_catalog(folder, n, seed=0):
    """A catalog with only id_str and file_loc (no vote columns at all)."""
    paths = galaxy_images(folder, n, seed)
    frame = pd.DataFrame({"id_str": [f"g{i}" for i in range(n)], "file_loc": [str(p) for p in paths]})
    frame.to_parquet(folder / "catalog.parquet")
    return read_catalog(folder / "catalog.parquet")


def partly_voted_catalog(folder, n, voted_every=3):
    """Every ``voted_every``-th galaxy has votes (ring or not -> featured or smooth), the rest none (NaN)."""
    frame = vote_free_catalog(folder, n)
    for a in gz_trees.ANSWERS:
        frame[a] = np.nan
    voted = np.arange(n) % voted_every == 0
    ring = np.arange(n) % 2 == 1
    frame.loc[voted, "smooth-or-featured_smooth"] = np.where(ring[voted], 3, 17)
    frame.loc[voted, "smooth-or-featured_featured-or-disk"] = np.where(ring[voted], 17, 3)
    frame.loc[voted, "smooth-or-featured_artifact"] = 0
    frame.to_parquet(folder / "catalog.parquet")
    return read_catalog(folder / "catalog.parquet")


def config(**kw):
    base = dict(arch=ARCH, bottleneck=16, input_size=32, epochs=2, batch_size=16, lr=3e-3, val_fraction=0.2,
                patience=3, seed=0, workers=0, threads=1, objective="contrastive")
    base.update(kw)
    return TrainConfig(**base)


def test_losses_prefer_matching_pairs():
    torch.manual_seed(0)
    a = torch.randn(16, 8)
    near, far = a + 0.05 * torch.randn(16, 8), torch.randn(16, 8)
    assert nt_xent_loss(a, near, 0.2) < nt_xent_loss(a, far, 0.2)
    assert vicreg_loss(a, near) < vicreg_loss(a, far)
    assert nt_xent_loss(a, a, 0.1) < 0.1 < np.log(31) < nt_xent_loss(a, far, 10.0)


def test_views_are_random_keep_colour_and_range(tmp_path):
    from raregal.images.dataset import load_image

    image = load_image(galaxy_images(tmp_path, 1)[0])
    torch.manual_seed(0)
    two = paired_views(32)(image)
    assert two.shape == (2, 3, 32, 32) and 0 <= two.min() and two.max() <= 1
    assert not torch.equal(two[0], two[1])
    torch.manual_seed(0)
    assert torch.equal(paired_views(32)(image), two)  # seeded by torch's generator
    assert paired_views(32, plain=True)(image).shape == (3, 3, 32, 32)
    # brightness/contrast act on all bands alike: the colour balance (band ratios of the total light) stays
    torch.manual_seed(1)
    view = view_transform(32, noise_prob=0.0, blur_prob=0.0)(image)
    ratio = lambda x: (x.sum((1, 2)) / x.sum()).numpy()  # noqa: E731
    assert np.allclose(ratio(view), ratio(image), atol=0.03)


def test_contrastive_training_lowers_its_loss_and_pulls_views_of_one_galaxy_together(tmp_path):
    catalog = vote_free_catalog(tmp_path / "data", 240)
    summary = train(catalog, tmp_path / "ck", config(epochs=4, batch_size=32, lr=2e-3, val_fraction=0.15),
                    progress=False)
    epochs = json.loads((tmp_path / "ck" / "history.json").read_text())["epochs"]
    assert summary["epochs_run"] == 4 and not summary["has_head"]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"] - 0.1
    assert epochs[-1]["val_loss"] < epochs[0]["val_loss"]
    assert epochs[-1]["train_contrastive"] == epochs[-1]["train_loss"]
    assert np.isfinite(epochs[-1]["val_contrastive"])
    stored = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert stored["model"]["head"] is False and stored["schema"] is None
    assert stored["training"]["objective"] == "contrastive"
    assert stored["training"]["projection_head"]["in"] == 16

    model = load_model(tmp_path / "ck").eval()
    assert model.head is None and not any(k.startswith("projection") for k in model.state_dict())
    from raregal.images.dataset import load_image

    views = paired_views(32)
    torch.manual_seed(123)
    x = torch.stack([views(load_image(p)) for p in catalog["file_loc"][:60]])  # (60, 2, C, H, W)
    with torch.no_grad():
        z = torch.nn.functional.normalize(model.embed(x.flatten(0, 1)), dim=1).view(60, 2, -1)
    cos = z[:, 0] @ z[:, 1].T
    same, other = cos.diagonal().mean(), cos[~torch.eye(60, dtype=torch.bool)].mean()
    assert same > other + 0.1, (same, other)
    # the partner view is the nearest of all 60 far more often than by chance (1/60); an untrained
    # encoder maps every view to nearly the same point (cosine 0.99999 within and between galaxies)
    assert (cos.argmax(1) == torch.arange(60)).float().mean() > 5 / 60


def test_hybrid_without_votes_equals_contrastive(tmp_path):
    catalog = vote_free_catalog(tmp_path / "data", 48)
    a = train(catalog, tmp_path / "con", config(), progress=False)
    b = train(catalog, tmp_path / "hyb", config(objective="hybrid"), progress=False)
    assert not a["has_head"] and not b["has_head"]
    ha = json.loads((tmp_path / "con" / "history.json").read_text())["epochs"]
    hb = json.loads((tmp_path / "hyb" / "history.json").read_text())["epochs"]
    assert [(e["train_loss"], e["val_loss"]) for e in ha] == [(e["train_loss"], e["val_loss"]) for e in hb]
    wa, wb = load_model(tmp_path / "con").state_dict(), load_model(tmp_path / "hyb").state_dict()
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_hybrid_on_a_partly_voted_catalog_trains_both_parts_and_embeds_fractions(tmp_path):
    catalog = partly_voted_catalog(tmp_path / "data", 48)
    summary = train(catalog, tmp_path / "ck", config(objective="hybrid", contrastive_weight=0.5), progress=False)
    assert summary["has_head"]
    epoch = json.loads((tmp_path / "ck" / "history.json").read_text())["epochs"][-1]
    assert epoch["train_dirichlet"] > 0 and epoch["train_contrastive"] > 0
    assert epoch["val_loss"] == pytest.approx(epoch["val_dirichlet"] + 0.5 * epoch["val_contrastive"])
    assert epoch["val_loss_per_question"]["smooth-or-featured"] > 0 and epoch["val_loss_per_question"]["bar"] is None
    stored = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert stored["training"]["n_with_votes"] == 16 and stored["model"]["head"] is True

    from raregal.embedding.local import embed_catalog

    reps = embed_catalog(catalog, load_model(tmp_path / "ck").eval(), tmp_path / "reps.parquet", workers=0,
                         progress=False)
    frame = pd.read_parquet(tmp_path / "reps.parquet")
    assert np.isfinite(frame[gz_trees.SMOOTH_FRACTION]).all(), reps


def test_vote_free_catalog_is_refused_by_dirichlet_saying_what_is_missing(tmp_path):
    catalog = vote_free_catalog(tmp_path / "data", 20)
    with pytest.raises(InputError, match="no vote-count columns.*--objective contrastive"):
        train(catalog, tmp_path / "ck", config(objective="dirichlet"), progress=False)
    assert not (tmp_path / "ck").exists()
    catalog[gz_trees.ANSWERS[0]] = np.nan  # vote columns, but no votes
    with pytest.raises(InputError, match="no galaxy of the catalog has any votes"):
        train(catalog, tmp_path / "ck", config(objective="dirichlet"), progress=False)


def test_bad_inputs_fail_before_out_is_created(tmp_path):
    catalog = vote_free_catalog(tmp_path / "data", 30)
    with pytest.raises(InputError, match=r"--batch-size 512: larger than the 24 readable images of the training "
                                         r"split \(30 readable in the catalog"):
        train(catalog, tmp_path / "ck", config(batch_size=512), progress=False)
    gone = catalog.assign(file_loc=[str(tmp_path / f"missing{i}.png") for i in range(len(catalog))])
    gone.loc[0, "file_loc"] = catalog.loc[0, "file_loc"]
    (tmp_path / "missing1.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="--batch-size 16: larger than the 1 readable images"):
        train(gone, tmp_path / "ck", config(val_fraction=0.0), progress=False)
    for bad, flag in [(dict(objective="simclr"), "--objective simclr: unknown"),
                      (dict(contrastive_method="byol"), "--contrastive-method byol: unknown"),
                      (dict(contrastive_weight=-1.0), "--contrastive-weight"),
                      (dict(temperature=0.0), "--temperature")]:
        with pytest.raises(InputError, match=flag):
            train(catalog, tmp_path / "ck", config(**bad), progress=False)
    assert not (tmp_path / "ck").exists()


def test_cli_contrastive_then_embed_gives_nan_fractions_and_the_prefilter_says_it_removed_nothing(tmp_path, capsys):
    from raregal.cli import main
    from raregal.discovery.prefilter import paper_cuts, prefilter

    vote_free_catalog(tmp_path / "data", 40)
    cat = str(tmp_path / "data" / "catalog.parquet")
    common = ["--catalog", cat, "--arch", ARCH, "--bottleneck", "8", "--input-size", "32", "--epochs", "1",
              "--batch-size", "8", "--workers", "0", "--device", "cpu"]
    assert main(["train", *common, "--out", str(tmp_path / "bad"), "--objective", "nope"]) == 2
    assert "--objective nope: unknown" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main(["train", *common, "--out", str(tmp_path / "bad"), "--batch-size", "64", "--objective", "hybrid"]) == 2
    assert "--batch-size 64: larger than" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main(["train", *common, "--out", str(tmp_path / "bad"), "--objective", "dirichlet"]) == 2
    assert "no vote-count columns" in capsys.readouterr().err and not (tmp_path / "bad").exists()

    assert main(["train", *common, "--out", str(tmp_path / "ck"), "--objective", "contrastive"]) == 0
    assert "no Dirichlet head" in capsys.readouterr().out
    assert main(["embed", cat, "--model", str(tmp_path / "ck"), "--out", str(tmp_path / "reps.parquet"),
                 "--workers", "0", "--device", "cpu"]) == 0
    reps = pd.read_parquet(tmp_path / "reps.parquet")
    assert len(reps) == 40 and reps[gz_trees.FRACTIONS].isna().all().all()
    capsys.readouterr()
    kept, counts = prefilter(reps, paper_cuts())  # what `raregal search` runs first
    assert kept.all() and counts["kept"] == 40
    assert "is NaN (an encoder without a Dirichlet head" in capsys.readouterr().err


def test_contrastive_resume_equals_an_uninterrupted_run_and_validation_views_are_fixed(tmp_path, monkeypatch):
    from conftest import stop_training_after_epoch

    catalog = vote_free_catalog(tmp_path / "data", 40)
    cfg = config(epochs=3, contrastive_method="vicreg", lr_schedule="cosine")
    train(catalog, tmp_path / "straight", cfg, progress=False)
    stop_training_after_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(catalog, tmp_path / "resumed", cfg, progress=False)
    monkeypatch.undo()
    train(catalog, tmp_path / "resumed", cfg, progress=False)
    a = json.loads((tmp_path / "straight" / "history.json").read_text())["epochs"]
    b = json.loads((tmp_path / "resumed" / "history.json").read_text())["epochs"]
    assert [e["val_loss"] for e in a] == [e["val_loss"] for e in b]
    wa = load_model(tmp_path / "straight" / "last").state_dict()
    wb = load_model(tmp_path / "resumed" / "last").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    with pytest.raises(InputError, match="other settings.*contrastive_method"):
        train(catalog, tmp_path / "resumed", config(epochs=3, lr_schedule="cosine"), progress=False)

    # the validation loss of one model is the same however often (and after whatever training RNG) it is taken
    from raregal.encoder.train import _TrainingRun, plan_run

    run = _TrainingRun(catalog, tmp_path / "resumed", cfg, plan_run(catalog, cfg), restart=False, progress=False)
    _, val_ds = run._datasets()
    first = run._validate(val_ds, {})["loss"]
    torch.rand(100)
    assert run._validate(val_ds, {})["loss"] == first
