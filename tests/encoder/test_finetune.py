"""Fine-tuning on labels: only the last blocks learn, seeded runs agree, the head finds a planted class,
bad labels are refused before any training, and ``raregal finetune`` writes its folder (never a user's)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from raregal.inputs.tables import read_catalog
from raregal.encoder import EncoderConfig, GalaxyEncoder, load_model, save_model
from raregal.encoder import finetune as ft
from raregal.errors import InputError

N, N_MEMBERS = 48, 10


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """48 galaxies of 32 px: blobs of random colour and size; the first 10 crossed by a bright green trail."""
    folder = tmp_path_factory.mktemp("ft_survey")
    (folder / "img").mkdir()
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:32, :32]
    rows = []
    for i in range(N):
        cx, cy, r = rng.uniform(12, 20), rng.uniform(12, 20), rng.uniform(8, 40)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / r)[..., None] * rng.uniform(0.4, 1.0, 3)
        pix = blob + rng.normal(0.05, 0.03, (32, 32, 3))
        if i < N_MEMBERS:  # the planted class: a trail through the image at a random angle
            a, off = rng.uniform(0, np.pi), rng.uniform(-6, 6)
            near = np.abs((xx - 16) * np.sin(a) - (yy - 16) * np.cos(a) - off) < 1.2
            pix[near] = [0.1, 0.95, 0.2]
        Image.fromarray((np.clip(pix, 0, 1) * 255).astype(np.uint8)).save(folder / "img" / f"g{i:02d}.png")
        rows.append({"id_str": f"g{i:02d}", "file_loc": f"img/g{i:02d}.png", "ra": 150.0 + i / 100, "dec": 2.0,
                     "true_class": "trail" if i < N_MEMBERS else "bulk"})
    pd.DataFrame(rows).to_parquet(folder / "catalog.parquet")
    return folder


def tiny_model() -> GalaxyEncoder:
    torch.manual_seed(0)
    return GalaxyEncoder(EncoderConfig(arch="test_efficientnet", bottleneck=8, input_size=32)).eval()


def labels_of(members, non=()) -> pd.DataFrame:
    ids = [f"g{i:02d}" for i in members] + [f"g{i:02d}" for i in non]
    return pd.DataFrame({"id_str": ids, "label": [1] * len(members) + [0] * len(non)})


def quick(**kw):
    return {"epochs": 1, "blocks": 1, "progress": False, "backend": "torch", **kw}


def test_blocks_count_the_stages_and_the_head_conv_always_learns():
    model = GalaxyEncoder(EncoderConfig(arch="mobilenetv3_small_050", bottleneck=16, input_size=32))
    groups, tail = ft.backbone_groups(model.encoder)
    assert tail == 1 and all(n.startswith("conv_head") for n in groups[-1])  # after the stages: its own group
    names = ft.unfreeze_last(model, 1)
    assert any(n.startswith("encoder.blocks.5.") for n in names) and "encoder.conv_head.weight" in names
    assert not any(n.startswith("encoder.blocks.4.") for n in names) and "bottleneck.weight" in names
    assert not any(n.startswith("head.") for n in names)  # the Dirichlet head is not trained
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(names)
    assert ft.stages_trained(model, None) == 6  # the default: every stage but the stem
    only_after = ft.unfreeze_last(model, 0)
    assert {n.split(".")[1] for n in only_after if n.startswith("encoder.")} == {"conv_head"}
    with pytest.raises(InputError, match=r"blocks=8: must be a whole number in 0..7") as err:
        ft.unfreeze_last(model, 8)
    assert err.value.param == "blocks"


def test_only_the_unfrozen_parameters_change(survey):
    catalog = read_catalog(survey / "catalog.parquet")
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = ft.finetune(model, catalog, labels_of(range(4)), **quick())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the caller's model is untouched
    trainable = set(ft.unfreeze_last(tiny_model(), 1))
    after = result.model.state_dict()
    assert result.model.head is None and not result.model.config.head
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and changed <= trainable  # batch-norm statistics and the frozen blocks stay as they were
    assert "bottleneck.weight" in changed and any(k.startswith("encoder.blocks.4") for k in changed)
    assert result.representation.shape == (N, 8) and result.scores.shape == (N,)
    assert result.labels.tolist() == [1] * 4 + [-1] * (N - 4)


def test_the_same_seed_gives_the_same_scores_and_another_seed_others(survey):
    catalog = read_catalog(survey / "catalog.parquet")
    runs = [ft.finetune(tiny_model(), catalog, labels_of(range(4), [20, 21]), seed=s, **quick(epochs=2))
            for s in (0, 0, 1)]
    assert np.array_equal(runs[0].scores, runs[1].scores)
    assert np.array_equal(runs[0].representation, runs[1].representation)
    assert not np.allclose(runs[0].scores, runs[2].scores)


def test_the_head_ranks_held_out_members_above_the_rest(survey):
    from sklearn.metrics import roc_auc_score

    catalog = read_catalog(survey / "catalog.parquet")
    result = ft.finetune(tiny_model(), catalog, labels_of(range(5)), epochs=20, blocks=6, lr=3e-3, progress=False,
                         backend="torch")
    unlabelled = result.labels == -1
    member = catalog["true_class"].to_numpy()[result.rows] == "trail"
    auc = roc_auc_score(member[unlabelled], result.scores[unlabelled])
    top = np.argsort(-result.scores[unlabelled], kind="stable")[:5]
    assert auc > 0.9 and member[unlabelled][top].sum() >= 4, (auc, member[unlabelled][top])


@pytest.mark.parametrize("labels, class_name, message", [
    (pd.DataFrame({"id_str": ["g00", "nope", "gone"], "label": [1, 0, 1]}), None,
     r"2 of the 3 labelled id\(s\) are not in the table: 'nope', 'gone'"),
    (pd.DataFrame({"id_str": ["g00", "g00"], "label": [1, 0]}), None, r"labelled both 1 and 0: 'g00'"),
    (pd.DataFrame({"id_str": ["g00", "g30"], "label": [1, 2]}), None, r"1 label\(s\) are not 0 or 1.*g30=2"),
    (pd.DataFrame({"id_str": ["g20", "g30"], "label": [0, 0]}), None, r"none of the 2 label.*member \(1\)"),
    (pd.DataFrame({"id_str": ["g00", "g01"], "label": [1, 1], "class": ["a", "b"]}), None, r"2 classes"),
    (pd.DataFrame({"id_str": ["g00"], "label": [1], "class": ["a"]}), "b", r"class_name 'b': no "),
])
def test_bad_labels_are_input_errors_before_any_training(survey, monkeypatch, labels, class_name, message):
    catalog = read_catalog(survey / "catalog.parquet")

    def no_training(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(ft, "train_head", no_training)
    monkeypatch.setattr(ft, "read_images", no_training)
    with pytest.raises(InputError, match=message):
        ft.finetune(tiny_model(), catalog, labels, class_name=class_name, **quick())


def test_bad_settings_are_input_errors_naming_the_parameter(survey):
    catalog = read_catalog(survey / "catalog.parquet")
    for kw, param in (({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"), ({"pseudo_negatives": -3}, "pseudo_negatives"),
                      ({"blocks": 9}, "blocks")):
        with pytest.raises(InputError) as err:
            ft.finetune(tiny_model(), catalog, labels_of([0]), **{**quick(), **kw})
        assert err.value.param == param
    with pytest.raises(InputError, match="no non-member to learn from"):
        ft.finetune(tiny_model(), catalog, labels_of([0]), **quick(pseudo_negatives=0))


def test_the_cli_writes_its_folder_continues_with_guide_and_refuses_a_users_folder(survey, tmp_path, capsys):
    from raregal.runs import folder as runfolder
    from raregal.cli import main

    model_dir = save_model(tiny_model(), tmp_path / "tiny_model")
    labels_of([0, 1, 2], [30, 31]).to_csv(tmp_path / "labels.csv", index=False)
    out = tmp_path / "ft"
    args = ["finetune", str(survey / "catalog.parquet"), "--labels", str(tmp_path / "labels.csv"), "--out", str(out),
            "--model", str(model_dir), "--epochs", "1", "--blocks", "1", "--workers", "0", "--seed", "3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"{out}/reps.parquet" in printed and "done in" in printed
    assert runfolder.folder_kind(out) == "finetune"
    reps = pd.read_parquet(out / "reps.parquet")
    assert list(reps.columns[:2]) == ["id_str", "file_loc"] and [f"feat_{j}" for j in range(8)] == \
        [c for c in reps.columns if c.startswith("feat_")]
    assert {"score", "label", "ra", "dec", "true_class"} <= set(reps.columns) and len(reps) == N
    assert reps.set_index("id_str").loc[["g00", "g30", "g40"], "label"].tolist() == [1, 0, -1]
    ranked = pd.read_csv(out / "ranked.csv")
    assert list(ranked.columns[:6]) == ["id_str", "rank", "score", "ra", "dec", "file_loc"]
    assert len(ranked) == N - 5 and not set(ranked["id_str"]) & {"g00", "g01", "g02", "g30", "g31"}
    assert ranked["score"].is_monotonic_decreasing and ranked["rank"].tolist() == list(range(1, N - 4))
    summary = json.loads((out / "finetune.json").read_text())
    assert summary["n_members"] == 3 and summary["n_non_members"] == 2 and summary["seed"] == 3
    tuned = load_model(out / "model")
    assert tuned.head is None and tuned.representation_dim == 8 and (out / "model" / ft.HEAD_WEIGHTS).is_file()
    assert main(["guide", str(out / "reps.parquet"), "--labels", str(tmp_path / "labels.csv"),
                 "--out", str(tmp_path / "next.csv")]) == 0
    capsys.readouterr()
    assert main(args) == 2 and "pass --overwrite" in capsys.readouterr().err  # an earlier fine-tuning: only on request
    assert main(args + ["--overwrite"]) == 0
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    assert main(args[:5] + [str(user)] + args[6:] + ["--overwrite"]) == 2
    assert "raregal did not write (e.g. notes.txt)" in capsys.readouterr().err
    assert (user / "notes.txt").read_text() == "keep me" and sorted(p.name for p in user.iterdir()) == ["notes.txt"]


def test_the_cli_names_bad_labels_before_loading_a_model(survey, tmp_path, capsys, monkeypatch):
    from raregal.embedding import local
    from raregal.cli import main

    monkeypatch.setattr(local, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    pd.DataFrame({"id_str": ["g00", "zzz"], "label": [1, 0]}).to_csv(tmp_path / "labels.csv", index=False)
    rc = main(["finetune", str(survey / "catalog.parquet"), "--labels", str(tmp_path / "labels.csv"),
               "--out", str(tmp_path / "ft")])
    assert rc == 2 and "1 of the 2 labelled id(s) are not in the table: 'zzz'" in capsys.readouterr().err
    assert not (tmp_path / "ft").exists()


def test_a_run_folder_source_uses_its_labels_and_lists_unreadable_images(tiny_run_dir, tmp_path, capsys):
    import shutil

    from raregal.cli import main
    from raregal.guided import LabelStore

    run = shutil.copytree(tiny_run_dir, tmp_path / "run")  # its own labels.parquet; the table and images are shared
    reps = pd.read_parquet(tiny_run_dir.parent / "reps.parquet")
    members = reps.loc[reps["true_class"] == 1, "id_str"].tolist()
    LabelStore(run).set("blue", members[:4], 1)
    model_dir = save_model(tiny_model(), tmp_path / "tiny_model")
    out = tmp_path / "ft"
    assert main(["finetune", str(run), "--out", str(out), "--model", str(model_dir), "--epochs", "1",
                 "--workers", "0"]) == 0
    assert "2 unreadable" in capsys.readouterr().out
    skipped = pd.read_csv(out / "skipped.csv")
    assert len(skipped) == 2 and set(skipped.columns) == {"id_str", "reason"}
    table = pd.read_parquet(out / "reps.parquet")
    assert len(table) == len(reps) - 2 and (table["label"] == 1).sum() == 4
    assert json.loads((out / "finetune.json").read_text())["class"] == "blue"
