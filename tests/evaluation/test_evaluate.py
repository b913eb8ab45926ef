"""Encoder benchmark (`raregal evaluate`): kNN purity, held-back recall, pixel baseline, run scores."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from raregal.inputs.tables import read_table
from raregal.cli import main
from raregal.errors import InputError
from raregal.evaluation.encoders import evaluate, held_back_recall, knn_purity, split_queries
from raregal.evaluation.recovery import score_clusters

# Three tight groups A, B (3 galaxies) and C (2), and a scattered "bulk" class of 4: two galaxies
# beside A and B, and a pair between the groups. Nearest distances (worked out by hand):
#   A, B: each member's 2 nearest are its own group (≤ 2.24; anything else ≥ 3)       -> 1, 1, 1
#   C (0,100), (3,100): each other (3), then bulk (50,52) (69.3 and 67.2)              -> 1/2, 1/2
#   bulk (-3,0): A's (0,0) 3 and (0,2) 3.6; bulk (97,-5): B's (100,0) 5.8, (101,0) 6.4  -> 0, 0
#   bulk (50,50): (50,52) 2, then C's (3,100) 68.6; (50,52): (50,50) 2, (3,100) 67.2   -> 1/2, 1/2
X_HAND = np.array([[0, 0], [1, 0], [0, 2], [100, 0], [101, 0], [100, 2], [0, 100], [3, 100],
                   [-3, 0], [97, -5], [50, 50], [50, 52]], dtype=float)
Y_HAND = ["A"] * 3 + ["B"] * 3 + ["C"] * 2 + ["bulk"] * 4
PURITY_HAND = [1, 1, 1, 1, 1, 1, 0.5, 0.5, 0, 0, 0.5, 0.5]


def _hand_frame():
    return pd.DataFrame({"id_str": [f"g{i:02d}" for i in range(len(X_HAND))], "feat_0": X_HAND[:, 0],
                         "feat_1": X_HAND[:, 1], "kind": Y_HAND})


def test_knn_purity_by_hand():
    np.testing.assert_array_equal(knn_purity(X_HAND, Y_HAND, 2), PURITY_HAND)
    # k=1: only (-3,0) and (97,-5) have a neighbour of another class
    np.testing.assert_array_equal(knn_purity(X_HAND, Y_HAND, 1), [1] * 8 + [0, 0, 1, 1])
    with pytest.raises(InputError, match="--k 12"):
        knn_purity(X_HAND, Y_HAND, 12)
    # cosine compares directions: (1,0) is nearer (0,1) than (10,0.1) by length, not by angle
    x = np.array([[1, 0], [10, 0.1], [0, 1], [0.1, 10]])
    np.testing.assert_array_equal(knn_purity(x, list("aabb"), 1), [0, 1, 0, 1])
    np.testing.assert_array_equal(knn_purity(x, list("aabb"), 1, "cosine"), [1, 1, 1, 1])


def test_evaluate_class_table_by_hand():
    out = evaluate(_hand_frame(), "kind", 2, progress=False)
    enc = out["encoder"]["classes"]
    assert list(enc) == ["A", "B", "C", "bulk"]  # the background last
    assert [enc[c]["purity"] for c in enc] == [1.0, 1.0, 0.5, 0.25]
    assert [enc[c]["n"] for c in enc] == [3, 3, 2, 4]
    assert out["background"] == "bulk" and out["background_chosen_by"] == "the most common label"
    assert enc["bulk"]["background"] and enc["bulk"]["recall"] is None
    assert out["encoder"]["mean_purity"] == pytest.approx(2.5 / 3, abs=1e-12)  # bulk not averaged
    # any one query of a tight group finds the rest of it
    assert [enc[c]["recall"] for c in "ABC"] == [1.0, 1.0, 1.0]
    assert out["pixels"] is None and out["run"] is None
    # a named background: bulk is then a class like the others, and A is left out of the means
    named = evaluate(_hand_frame(), "kind", 2, background="A", progress=False)
    assert named["encoder"]["mean_purity"] == pytest.approx((1 + 0.5 + 0.25) / 3, abs=1e-12)


def test_held_back_recall_by_hand():
    # 1-D. Class R: query at 0, held back 1 and 10; the two galaxies nearest the query are 1 (R)
    # and 2 (bulk) -> 1/2. Class T: queries at 100 and 200, held back 101.5 and 205; by distance to
    # the nearest query they come first (1.5, 5), before the bulk galaxy at 150 (50 from either),
    # which the queries' centroid would have ranked first -> 1.
    x = np.array([0, 1, 10, 2, 3, 20, 100, 200, 101.5, 205, 150], dtype=float)[:, None]
    y = ["R", "R", "R", "bulk", "bulk", "bulk", "T", "T", "T", "T", "bulk"]
    is_query = np.zeros(len(x), bool)
    is_query[[0, 6, 7]] = True
    out = held_back_recall(x, y, is_query, classes=["R", "T"])
    assert out == {"R": {"recall": 0.5, "n_queries": 1, "n_held_back": 2},
                   "T": {"recall": 1.0, "n_queries": 2, "n_held_back": 2}}


def test_split_queries_half_capped_and_seeded():
    y = np.array(["a"] * 9 + ["b"] * 300 + ["c"])
    q = split_queries(y, ["a", "b", "c"], max_queries=100, seed=3)
    assert [(q & (y == c)).sum() for c in "abc"] == [4, 100, 0]
    np.testing.assert_array_equal(q, split_queries(y, ["a", "b", "c"], 100, seed=3))
    # a class's split does not depend on which other classes are split
    np.testing.assert_array_equal(q & (y == "a"), split_queries(y, ["a"], 100, seed=3))


def test_cli_writes_json_and_prints_table(tmp_path, capsys):
    reps = tmp_path / "reps.parquet"
    _hand_frame().to_parquet(reps)
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(reps), "--labels", "kind", "--k", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "purity_encoder" in printed and "recall_encoder" in printed and "purity_pixels" not in printed
    assert "bulk (background)" in printed and "the most common label" in printed
    assert "mean (non-background)" in printed and "0.833" in printed
    result = json.loads(out.read_text())
    assert {c: e["purity"] for c, e in result["encoder"]["classes"].items()} == \
        {"A": 1.0, "B": 1.0, "C": 0.5, "bulk": 0.25}
    assert result["k"] == 2 and result["labels"] == "kind" and result["metric"] == "euclidean"


def test_cli_errors_name_the_flag(tmp_path, capsys):
    reps = tmp_path / "reps.csv"
    _hand_frame().to_csv(reps, index=False)
    assert main(["evaluate", str(reps), "--labels", "kid"]) == 2
    err = capsys.readouterr().err
    assert "--labels kid: no such column" in err and "columns: id_str, feat_0, feat_1, kind" in err
    assert main(["evaluate", str(reps), "--labels", "kind", "--k", "12"]) == 2
    assert "--k 12: larger than the 12 galaxies less one" in capsys.readouterr().err
    assert main(["evaluate", str(reps), "--labels", "kind", "-k", "2", "--background", "nope"]) == 2
    assert "--background nope: no such label" in capsys.readouterr().err
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["evaluate", str(reps), "--labels", "kind", "-k", "2", "--out", str(notes)]) == 2
    assert "was not written by `raregal evaluate`; raregal never replaces it" in capsys.readouterr().err and notes.read_text() == "mine"


def _png(path, colour, rng):
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (24, 24), (0, 0, 0))
    r = int(rng.integers(5, 9))
    c = int(rng.integers(10, 14))
    ImageDraw.Draw(im).ellipse((c - r, c - r, c + r, c + r), fill=colour)
    im.save(path)


def test_pixel_baseline_beside_encoder_with_catalog(tmp_path):
    # representation: noise, so the encoder mixes the classes; images: red vs blue discs
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    ids = [f"red{i}" for i in range(5)] + [f"blue{i}" for i in range(5)] + ["broken"]
    for name in ids[:-1]:
        _png(tmp_path / "img" / f"{name}.png", (230, 40, 40) if name.startswith("red") else (40, 60, 230), rng)
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png")
    cat = pd.DataFrame({"id_str": ids, "file_loc": [f"img/{i}.png" for i in ids],  # relative to the catalog
                        "colour": ["red"] * 5 + ["blue"] * 5 + ["red"]})
    cat.to_csv(tmp_path / "catalog.csv", index=False)
    reps = pd.DataFrame(rng.normal(size=(11, 4)), columns=[f"feat_{j}" for j in range(4)])
    reps.insert(0, "id_str", ids)
    out = evaluate(reps, "colour", 2, catalog=tmp_path / "catalog.csv", workers=0,
                   progress=False)
    pix = out["pixels"]
    assert pix["n_unreadable"] == 1 and list(pix["unreadable"]) == ["broken"]
    assert pix["n_rows"] == 10 and pix["n_components"] == 4 and pix["size"] == 32
    assert {c: e["purity"] for c, e in pix["classes"].items()} == {"blue": 1.0, "red": 1.0}
    assert pix["classes"]["blue"]["recall"] == 1.0  # red (6) is the background
    assert out["encoder"]["classes"]["red"]["n"] == 6 and pix["classes"]["red"]["n"] == 5
    from raregal.evaluation.encoders import format_evaluation

    text = format_evaluation(out)
    assert "purity_pixels" in text and "recall_pixels" in text and "1 unreadable image(s) skipped: broken" in text


def test_run_recovery_equals_score_clusters(tiny_run_dir, tmp_path, capsys):
    summary = json.loads((tiny_run_dir / "summary.json").read_text())
    reps = read_table(summary["input"])
    clusters = read_table(tiny_run_dir / "clusters.parquet")
    out = tmp_path / "eval.json"
    assert main(["evaluate", summary["input"], "--labels", "true_class", "--background", "-1", "--run",
                 str(tiny_run_dir), "--no-pixels", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    cluster = clusters.set_index("id_str")["cluster"].reindex(reps["id_str"]).to_numpy()
    expect = score_clusters(reps["true_class"].astype(str).to_numpy(), cluster, bulk="-1")
    assert result["run"]["scores"] == expect and result["run"]["n_not_in_run"] == 0
    assert f"recovered {expect['n_recovered']} of {expect['n_classes']} classes" in printed
    assert result["pixels"] is None
    # the planted groups are tight in the representation: pure, and found again by `similar`
    assert result["encoder"]["mean_purity"] > 0.9 and result["encoder"]["mean_recall"] > 0.9


def test_a_run_metric_evaluate_cannot_rank_by_names_the_run_not_a_flag_never_given(tiny_run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    summary = json.loads((run / "summary.json").read_text())
    summary["parameters"]["metric"] = "manhattan"
    (run / "summary.json").write_text(json.dumps(summary))
    assert main(["evaluate", summary["input"], "--labels", "true_class", "--run", str(run), "--no-pixels"]) == 2
    err = capsys.readouterr().err
    assert "the run's metric 'manhattan'" in err and "pass --metric" in err
