"""Training on vote counts: one step lowers the loss, checkpoints, validation per question, resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from raregal.inputs import gz_trees as schema
from raregal.inputs.tables import read_catalog
from raregal.encoder import EncoderConfig, GalaxyEncoder, load_model
from raregal.encoder.dirichlet import dirichlet_loss
from raregal.errors import InputError
from raregal.encoder.train import TrainConfig, split_indices, train, vote_counts

ARCH = "test_efficientnet"


def make_catalog(folder, n=24, seed=0, bad=True):
    """Blobs (voted smooth) and stripes (voted featured), 32 px PNGs, plus a corrupt and a missing file."""
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:32, :32]
    rows = []
    for i in range(n):
        smooth = i % 2 == 0
        base = np.exp(-((xx - 16) ** 2 + (yy - 16) ** 2) / 40.0) if smooth else 0.5 + 0.5 * np.sin(xx / 2.0)
        pix = np.clip(255 * (base[..., None] * [1.0, 0.8, 0.6] + rng.normal(0, 0.05, (32, 32, 3))), 0, 255)
        Image.fromarray(pix.astype(np.uint8)).save(folder / "img" / f"g{i}.png")
        row = {"id_str": f"g{i}", "file_loc": f"img/g{i}.png"}
        row.update({a: 0 for a in schema.ANSWERS})
        row["smooth-or-featured_smooth" if smooth else "smooth-or-featured_featured-or-disk"] = 18
        row["smooth-or-featured_artifact"] = 2
        row["merging_none"] = 20
        rows.append(row)
    if bad:
        (folder / "img" / "bad.png").write_bytes(b"not an image")
        rows.append({**rows[0], "id_str": "bad", "file_loc": "img/bad.png"})
        rows.append({**rows[1], "id_str": "gone", "file_loc": "img/gone.png"})
    frame = pd.DataFrame(rows)
    frame.loc[2, "merging_none"] = np.nan  # a missing count
    frame.to_parquet(folder / "catalog.parquet")
    return read_catalog(folder / "catalog.parquet")


def config(**kw):
    base = dict(arch=ARCH, bottleneck=8, input_size=32, epochs=2, batch_size=8, lr=3e-3, val_fraction=0.25,
                patience=3, seed=0, workers=0)
    base.update(kw)
    return TrainConfig(**base)


def test_vote_columns_of_an_unknown_or_another_campaign_are_explained(caplog):
    with pytest.raises(InputError, match="bar-dr9_strong name a Galaxy Zoo campaign raregal does not know") as err:
        vote_counts(pd.DataFrame({"bar-dr9_strong": [1], "bar_strong": [2]}))
    assert err.value.param == "catalog"
    # votes of two campaigns: only the all-campaigns tree holds both
    counts = vote_counts(pd.DataFrame({"bar-dr5_strong": [1], "smooth-or-featured-dr8_smooth": [3]}))
    assert counts.shape == (1, len(schema.DECALS_ALL.answers)) and counts.sum() == 4
    # as many columns of GZ DESI's as of DR8's: ambiguous, so the error lists both and names the parameter
    with pytest.raises(InputError, match=r"several Galaxy Zoo trees equally \(desi, decals-dr8.*schema=NAME") as err:
        vote_counts(pd.DataFrame({"bar_strong": [2], "bar-dr8_strong": [1]}))
    assert err.value.param == "schema"
    counts = vote_counts(pd.DataFrame({"bar_strong": [2], "bar-dr8_strong": [1]}), "desi")
    assert counts.sum() == 2 and "vote columns of other trees are ignored (training the desi tree): bar-dr8_strong" \
        in caplog.text


def test_the_tree_is_inferred_from_complete_vote_columns_and_said(caplog):
    import logging

    from raregal.encoder.train import train_schema

    caplog.set_level(logging.INFO, logger="raregal")
    dr5_dr8 = schema.DECALS_DR5.answers + schema.DECALS_DR8.answers
    assert train_schema(dr5_dr8) is schema.DECALS_ALL
    assert "vote columns are those of the decals-all-campaigns tree (98 answers)" in caplog.text
    assert train_schema(schema.GZ2.answers) is schema.GZ2 and train_schema(schema.DECALS_DR12.answers) is \
        schema.DECALS_DR12  # both 30 answers wide, told apart by their names
    assert train_schema(schema.ANSWERS) is schema.DESI
    assert train_schema(schema.ANSWERS, "decals-dr8") is schema.DECALS_DR8  # --schema decides
    with pytest.raises(InputError, match="no_such_tree.*known: desi") as err:
        train_schema(schema.ANSWERS, "no_such_tree")
    assert err.value.param == "schema"


def test_vote_counts_fill_missing_with_zero_and_name_absent_columns(caplog):
    frame = pd.DataFrame({"id_str": ["a", "b"], "bar_strong": [3, np.nan], "bar_no": [1, 2]})
    counts = vote_counts(frame)
    assert counts.shape == (2, 34)
    assert counts[:, schema.ANSWERS.index("bar_strong")].tolist() == [3, 0]
    assert counts[:, schema.ANSWERS.index("bar_no")].tolist() == [1, 2]
    assert "smooth-or-featured_smooth" in caplog.text
    with pytest.raises(InputError, match="no vote-count columns"):
        vote_counts(pd.DataFrame({"id_str": ["a"]}))
    with pytest.raises(InputError, match="bar_no.*negative"):
        vote_counts(pd.DataFrame({"bar_no": [-1]}))


def test_split_is_seeded_and_independent_of_row_order():
    ids = np.array([f"g{i}" for i in range(50)])
    tr, va = split_indices(ids, 0.2, seed=1)
    assert len(va) == 10 and len(tr) == 40 and not set(tr) & set(va)
    shuffled = ids[::-1]
    tr2, va2 = split_indices(shuffled, 0.2, seed=1)
    assert set(shuffled[va2]) == set(ids[va])
    assert set(ids[split_indices(ids, 0.2, seed=2)[1]]) != set(ids[va])


def test_one_training_step_lowers_the_loss(tmp_path):
    catalog = make_catalog(tmp_path, n=16, bad=False)
    from raregal.images.dataset import load_image, resize

    x = torch.stack([resize(load_image(p), 32) for p in catalog["file_loc"]])
    y = torch.as_tensor(vote_counts(catalog))
    torch.manual_seed(0)
    model = GalaxyEncoder(EncoderConfig(arch=ARCH, bottleneck=8, input_size=32, dropout=0.0)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = dirichlet_loss(model(x), y)
    opt.zero_grad()
    before.backward()
    opt.step()
    after = dirichlet_loss(model(x), y)
    assert after.item() < before.item() - 1e-3


def test_train_writes_a_loadable_model_history_and_skipped_list(tmp_path):
    catalog = make_catalog(tmp_path / "data")
    summary = train(catalog, tmp_path / "ck", config(epochs=3), progress=False)
    assert summary["epochs_run"] == 3 and summary["n_skipped"] == 2
    assert summary["n_train"] + summary["n_val"] == len(catalog)
    history = json.loads((tmp_path / "ck" / "history.json").read_text())
    epochs = history["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    per_q = epochs[0]["val_loss_per_question"]
    assert set(per_q) == set(schema.QUESTIONS)
    assert per_q["smooth-or-featured"] > 0 and per_q["bar"] is None  # nobody was asked about bars
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert summary["best_val_loss"] == pytest.approx(min(e["val_loss"] for e in epochs))
    skipped = pd.read_csv(tmp_path / "ck" / "skipped.csv")
    assert sorted(skipped["id_str"]) == ["bad", "gone"]
    model = load_model(tmp_path / "ck")
    assert model.representation_dim == 8 and model.config.input_size == 32
    stored = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert stored["training"]["epoch"] == summary["best_epoch"]


def test_resumed_training_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    from conftest import stop_training_after_epoch

    catalog = make_catalog(tmp_path / "data", bad=False)
    train(catalog, tmp_path / "straight", config(epochs=3, lr_schedule="cosine"), progress=False)
    stop_training_after_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(catalog, tmp_path / "resumed", config(epochs=3, lr_schedule="cosine"), progress=False)
    monkeypatch.undo()
    summary = train(catalog, tmp_path / "resumed", config(epochs=3, lr_schedule="cosine"), progress=False)
    assert summary["epochs_run"] == 3
    history = json.loads((tmp_path / "resumed" / "history.json").read_text())["epochs"]
    straight = json.loads((tmp_path / "straight" / "history.json").read_text())["epochs"]
    assert [e["lr"] for e in history] == [e["lr"] for e in straight] and history[2]["lr"] < history[0]["lr"]
    a = load_model(tmp_path / "straight" / "last").state_dict()
    b = load_model(tmp_path / "resumed" / "last").state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    with pytest.raises(InputError, match="other settings.*bottleneck"):
        train(catalog, tmp_path / "resumed", config(epochs=3, bottleneck=4), progress=False)


def test_early_stopping_and_init_from_another_model(tmp_path, monkeypatch):
    import raregal.encoder.train as train_mod

    catalog = make_catalog(tmp_path / "data", bad=False)
    train(catalog, tmp_path / "first", config(epochs=1), progress=False)
    losses = iter([5.0, 4.0, 4.5, 4.2, 3.9, 3.0])  # best at epoch 2, then two epochs without improvement
    real_evaluate = train_mod.validation_loss

    def scripted(model, loader, device):
        return {**real_evaluate(model, loader, device), "loss": next(losses)}

    monkeypatch.setattr(train_mod, "validation_loss", scripted)
    # lr 0: the weights stay those copied from --init
    summary = train(catalog, tmp_path / "second", config(epochs=6, patience=2, lr=0.0, init=str(tmp_path / "first")),
                    progress=False)
    assert summary["stopped_early"] and summary["epochs_run"] == 4 and summary["best_epoch"] == 2
    assert summary["best_val_loss"] == 4.0
    first = load_model(tmp_path / "first").state_dict()
    second = load_model(tmp_path / "second").state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first if k.startswith("encoder.") and "running" not in k
               and "num_batches" not in k)


def _campaign_catalog(folder, n=16):
    """make_catalog's galaxies, the even ones voted in GZ DECaLS DR5 and the odd ones in DR8 (NaN in the other)."""
    make_catalog(folder, n=n, bad=False)
    frame = pd.read_parquet(folder / "catalog.parquet")
    votes = frame[schema.ANSWERS]
    rest = frame.drop(columns=schema.ANSWERS)
    parts = [rest]
    for campaign, keep in (("dr5", frame.index % 2 == 0), ("dr8", frame.index % 2 == 1)):
        part = votes.astype(float).copy()
        part.loc[~np.asarray(keep)] = np.nan
        part.columns = [a.replace("_", f"-{campaign}_", 1) for a in schema.ANSWERS]
        parts.append(part)
    out = pd.concat(parts, axis=1)
    out.to_parquet(folder / "campaigns.parquet")
    return read_catalog(folder / "campaigns.parquet")


def test_train_on_two_campaigns_infers_the_all_campaigns_tree_and_records_it(tmp_path, caplog):
    import logging

    from raregal.embedding.local import embed_chunk

    caplog.set_level(logging.INFO, logger="raregal")
    catalog = _campaign_catalog(tmp_path / "data")
    assert set(schema.DECALS_DR8.answers) <= set(catalog.columns) and schema.ANSWERS[0] not in catalog.columns
    summary = train(catalog, tmp_path / "ck", config(epochs=1, val_fraction=0.5), progress=False)
    assert summary["schema"] == "decals-all-campaigns" and "decals-all-campaigns tree (98 answers)" in caplog.text
    assert "lacks 30 answer columns of the decals-all-campaigns tree" in caplog.text  # DR1/2: 0 votes, no loss
    per_q = json.loads((tmp_path / "ck" / "history.json").read_text())["epochs"][0]["val_loss_per_question"]
    assert list(per_q) == list(schema.DECALS_ALL.questions)
    assert per_q["smooth-or-featured-dr12"] is None  # nobody voted in DR1/2: those questions teach nothing
    assert per_q["smooth-or-featured-dr5"] > 0 and per_q["smooth-or-featured-dr8"] > 0
    stored = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert stored["schema"]["name"] == "decals-all-campaigns" and len(stored["schema"]["answers"]) == 98
    assert stored["training"]["schema"] == "decals-all-campaigns"
    model = load_model(tmp_path / "ck")
    assert model.schema is schema.DECALS_ALL and model.head[1][0].out_features == 98
    with pytest.raises(InputError, match="decals-all-campaigns tree.*not schema=desi"):
        load_model(tmp_path / "ck", schema="desi")
    table, _ = embed_chunk(model, catalog.head(3), backend="torch")
    fractions = [c for c in table.columns if c.endswith("_fraction")]
    assert fractions == schema.DECALS_ALL.fractions and "smooth-or-featured-dr8_smooth_fraction" in fractions
    with pytest.raises(InputError, match="other settings.*schema"):  # a resume keeps the tree it began with
        train(catalog, tmp_path / "ck", config(epochs=2, val_fraction=0.5, schema="decals-dr8"), progress=False)


def test_train_cli(tmp_path, capsys):
    from raregal.cli import main

    make_catalog(tmp_path / "data", n=12)
    rc = main(["train", "--catalog", str(tmp_path / "data" / "catalog.parquet"), "--out", str(tmp_path / "ck"),
               "--arch", ARCH, "--bottleneck", "4", "--input-size", "32", "--epochs", "1", "--batch-size", "4",
               "--workers", "0", "--device", "cpu"])
    assert rc == 0 and "best validation loss" in capsys.readouterr().out
    assert load_model(tmp_path / "ck").representation_dim == 4
    rc = main(["train", "--catalog", str(tmp_path / "data" / "catalog.parquet"), "--out", str(tmp_path / "x"),
               "--arch", "no_such_net", "--epochs", "1"])
    assert rc == 2


def test_train_cli_names_schema_when_the_votes_are_ambiguous(tmp_path, capsys):
    from raregal.cli import main

    make_catalog(tmp_path / "data", n=8, bad=False)
    frame = pd.read_parquet(tmp_path / "data" / "catalog.parquet")[["id_str", "file_loc", "bar_strong"]]
    frame["bar-dr8_strong"] = 1
    frame.to_parquet(tmp_path / "data" / "mixed.parquet")
    rc = main(["train", "--catalog", str(tmp_path / "data" / "mixed.parquet"), "--out", str(tmp_path / "ck"),
               "--arch", ARCH, "--epochs", "1", "--batch-size", "4", "--workers", "0", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "desi, decals-dr8" in err and "--schema NAME" in err
    assert not (tmp_path / "ck").exists()


def test_rarity_weights_follow_the_hand_computed_surprise():
    from raregal.encoder.dirichlet import mean_fractions, vote_surprise
    from raregal.encoder.train import RarityWeighting

    tree = schema.DEFAULT
    sof = [tree.answers.index(f"smooth-or-featured_{a}") for a in ("smooth", "featured-or-disk", "artifact")]
    counts = np.zeros((4, len(tree.answers)), np.float32)
    counts[0, sof] = [10, 0, 0]  # three smooth galaxies and one artifact, 10 votes each
    counts[1, sof] = [10, 0, 0]
    counts[2, sof] = [10, 0, 0]
    counts[3, sof] = [0, 0, 10]
    mean = mean_fractions(counts, tree)
    assert mean[sof] == pytest.approx([0.75, 0.0, 0.25])
    assert mean.sum() == pytest.approx(1.0)  # only smooth-or-featured was asked
    s = vote_surprise(torch.as_tensor(counts), torch.as_tensor(mean), tree).numpy()
    assert s == pytest.approx([np.log(1 / 0.75)] * 3 + [np.log(1 / 0.25)])
    w = RarityWeighting(counts, tree, strength=2.0)
    weights = w(torch.as_tensor(counts)).numpy()
    assert weights.mean() == pytest.approx(1.0, rel=1e-6)  # weights average 1 over the voted galaxies
    assert weights[3] / weights[0] == pytest.approx((1 + 2 * s[3] / s.mean()) / (1 + 2 * s[0] / s.mean()), rel=1e-5)
    assert weights[3] > 2 * weights[0]
    assert RarityWeighting(counts, tree, strength=0.0)(torch.as_tensor(counts)).numpy() == pytest.approx(1.0)


def test_rarity_weight_trains_and_is_refused_where_there_are_no_votes(tmp_path):
    catalog = make_catalog(tmp_path / "data", bad=False)
    summary = train(catalog, tmp_path / "ck", config(epochs=2, rarity_weight=2.0), progress=False)
    stored = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert stored["training"]["rarity_weight"] == 2.0 and summary["epochs_run"] == 2
    history = json.loads((tmp_path / "ck" / "history.json").read_text())["epochs"]
    assert all(np.isfinite(e["train_loss"]) and e["train_loss"] > 0 for e in history)
    with pytest.raises(InputError, match="--rarity-weight -1"):
        train(catalog, tmp_path / "ck2", config(rarity_weight=-1.0), progress=False)
    with pytest.raises(InputError, match="--objective contrastive has neither"):
        train(catalog, tmp_path / "ck3", config(objective="contrastive", rarity_weight=1.0), progress=False)
    assert not (tmp_path / "ck2").exists() and not (tmp_path / "ck3").exists()
    with pytest.raises(InputError, match="rarity_weight"):  # a resume must use the same weighting
        train(catalog, tmp_path / "ck", config(epochs=3, rarity_weight=1.0), progress=False)


def test_the_rarity_weights_reach_the_training_loss(tmp_path, monkeypatch):
    import raregal.encoder.train as tr
    from raregal.encoder.dirichlet import dirichlet_multinomial_nll

    seen = []
    original = tr._dirichlet_term

    def spy(conc, counts, tree, weighting):
        loss = original(conc, counts, tree, weighting)
        nll = dirichlet_multinomial_nll(conc, counts, tree).sum(1)
        expected = (nll * weighting(counts)).mean() if weighting is not None else nll.mean()
        seen.append((weighting is not None, loss.item(), expected.item(), nll.mean().item()))
        return loss

    monkeypatch.setattr(tr, "_dirichlet_term", spy)
    catalog = make_catalog(tmp_path / "data", bad=False)
    catalog.loc[catalog.index[:3], "smooth-or-featured_artifact"] = 18  # three galaxies with a rare answer
    train(catalog, tmp_path / "ck", config(epochs=1, rarity_weight=3.0), progress=False)
    assert seen and all(weighted for weighted, *_ in seen)
    assert all(loss == pytest.approx(expected, rel=1e-6) for _, loss, expected, _ in seen)
    assert any(abs(loss - plain) > 1e-3 * abs(plain) for _, loss, _, plain in seen)  # the weights did change it


def test_rarity_weights_are_one_when_nothing_is_rare():
    from raregal.encoder.train import RarityWeighting

    tree = schema.DEFAULT
    counts = np.zeros((3, len(tree.answers)), np.float32)
    counts[:, tree.answers.index("smooth-or-featured_smooth")] = 10  # everyone votes as the average volunteer
    w = RarityWeighting(counts, tree, strength=2.0)
    assert w(torch.as_tensor(counts)).numpy() == pytest.approx(1.0)
