"""The shipped demo encoder and the end-to-end demo (synth -> embed -> search -> summary)."""

from __future__ import annotations

import fnmatch
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from raregal.inputs import gz_trees
from raregal.encoder import load_model
from raregal.encoder.loading import demo_model_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_demo_encoder_ships_in_the_package():
    folder = demo_model_path()
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["config.json", "model.safetensors"]
    assert sum((folder / f).stat().st_size for f in files) < 5 * 2**20  # a few MB
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["raregal"]
    for f in files:  # the wheel must carry them
        assert any(fnmatch.fnmatch(f"data/demo_encoder/{f}", p) for p in patterns), (f, patterns)
    model = load_model("demo")
    assert model.representation_dim == 128 and model.head is not None
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["bottleneck"] == 128 and config["training"]["epoch"] >= 1


@pytest.fixture(scope="module")
def small_survey(tmp_path_factory):
    from raregal.inputs.tables import read_catalog
    from raregal.synth import RARE_CLASSES, make_survey

    out = tmp_path_factory.mktemp("demo_survey")
    make_survey(200, out, seed=11, class_fractions={c: 0.04 for c in RARE_CLASSES}, n_workers=1, progress=False)
    return read_catalog(out / "catalog.parquet")


def test_demo_encoder_predicts_the_votes_of_galaxies_it_never_saw(small_survey):
    from raregal.embedding.local import embed_chunk

    table, skipped = embed_chunk(load_model("demo"), small_survey, batch_size=64)
    assert len(table) == len(small_survey) and skipped.empty
    votes = small_survey.set_index("id_str").loc[table["id_str"]]
    for answer in ("smooth-or-featured_smooth", "disk-edge-on_yes"):
        q = gz_trees.question(answer.rsplit("_", 1)[0])
        asked = votes[list(q.answers)].sum(axis=1).to_numpy()
        observed = votes[answer].to_numpy() / np.maximum(asked, 1)
        keep = asked >= 5
        r = np.corrcoef(table[f"{answer}_fraction"].to_numpy()[keep], observed[keep])[0, 1]
        assert r > 0.6, (answer, r)  # random weights give r ~ 0


def test_run_demo_end_to_end_on_a_small_survey(tmp_path, monkeypatch):
    from raregal.demo import DemoConfig, format_summary, run_demo

    config = DemoConfig(n_galaxies=200, seed=11, rare_fraction=0.04, n_neighbors=10, min_samples=5,
                        min_cluster_size=5, workers=1, search_extra={"report": False})
    summary = run_demo(tmp_path / "demo", config, progress=False)
    on_disk = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert on_disk["n_classes"] == summary["n_classes"] == 10
    assert on_disk["counts"]["input"] == 200 and 0 < on_disk["counts"]["kept"] < 200
    from raregal.synth import RARE_CLASSES

    assert set(on_disk["metrics"]["classes"]) == set(RARE_CLASSES) and len(RARE_CLASSES) == 10
    import pandas as pd

    from raregal.evaluation.recovery import score_clusters

    for mode, entry in on_disk["modes"].items():  # the demo's scores are those of its run directory
        rows = pd.read_parquet(Path(entry["run_dir"]) / "clusters.parquet")
        scores = score_clusters(rows["true_class"].astype(str).to_numpy(), rows["cluster"].to_numpy())
        for name, c in entry["metrics"]["classes"].items():
            assert c["recall"] == pytest.approx(scores["classes"][name]["recall"]), (mode, name)
            assert c["purity"] == pytest.approx(scores["classes"][name]["purity"]), (mode, name)
            assert c["n_kept"] == int(rows.loc[rows["true_class"] == name, "kept"].sum()), (mode, name)
        assert entry["n_recovered"] == scores["n_recovered"]
    # both filter modes ran, each into its own run directory, and both are printed
    assert set(on_disk["modes"]) == {"paper", "keep_artifacts"}
    paper, art = on_disk["modes"]["paper"], on_disk["modes"]["keep_artifacts"]
    assert Path(paper["run_dir"]).name == "search" and Path(art["run_dir"]).name == "search_artifacts"
    assert (Path(art["run_dir"]) / "summary.json").exists() and not paper["keep_artifacts"] and art["keep_artifacts"]
    assert art["counts"]["kept"] >= paper["counts"]["kept"]  # keeping artifacts drops fewer galaxies
    assert on_disk["n_recovered"] == paper["n_recovered"] and on_disk["metrics"] == paper["metrics"]
    for entry in (paper, art):
        assert set(entry["passing_filter"]) <= set(entry["metrics"]["classes"])
        assert entry["n_recovered_passing"] == sum(entry["metrics"]["classes"][c]["recovered"]
                                                   for c in entry["passing_filter"])
        for c in entry["metrics"]["classes"].values():
            assert 0 <= c["n_kept"] <= c["n_true"] and c["passes_filter"] == (c["n_kept"] >= 0.5 * c["n_true"])
    text = format_summary(summary)
    assert text.count("PLANTED RARE CLASSES") == 2 and "--keep-artifacts" in text and "ring" in text
    # the guided round: a simulated person's labels are in the run's labels.parquet, as the explorer keeps them
    guided = on_disk["guided"]
    labels = pd.read_parquet(Path(paper["run_dir"]) / "labels.parquet")
    truth = pd.read_parquet(tmp_path / "demo" / "reps.parquet", columns=["id_str", "true_class"]).set_index(
        "id_str")["true_class"]
    assert len(labels) == guided["start"] + guided["shown"] and set(labels["class"]) == {"shells streams"}
    assert ((truth.reindex(labels["id_str"]) == "shells_streams").to_numpy() == (labels["label"] == 1).to_numpy()).all()
    assert guided["found"] == int(labels["label"].sum()) - guided["start"] == sum(guided["found_per_round"])
    assert 0 < guided["recall"] <= 1 and "GUIDED SEARCH FOUND" in text
    nxt = pd.read_csv(guided["next"])
    assert len(nxt) == guided["batch"] and not set(nxt["id_str"]) & set(labels["id_str"])
    assert paper["report"] is None and art["report"] is None  # search_extra report=False: none built
    # a rerun re-uses the survey and the embedding (the encoder is not even loaded), and builds the reports
    import raregal.embedding.local
    import raregal.views.report

    images = sorted((tmp_path / "demo" / "survey").rglob("*.png"))
    assert len(images) >= 200
    stamps = {p: p.stat().st_mtime_ns for p in (*images[::20], tmp_path / "demo" / "reps.parquet")}
    monkeypatch.setattr(raregal.embedding.local, "load_model", lambda *a, **k: pytest.fail("embedded again"))
    reported = []

    def fake_report(run_dir, progress=True):  # the report's own tests build real ones
        reported.append(Path(run_dir).name)
        (Path(run_dir) / "report").mkdir(exist_ok=True)
        (Path(run_dir) / "report" / "index.html").write_text("<html></html>")

    monkeypatch.setattr(raregal.views.report, "report_after_search", fake_report)
    again = run_demo(tmp_path / "demo", DemoConfig(**{**config.__dict__, "search_extra": {}}), progress=False)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert reported == ["search", "search_artifacts"]
    assert again["report"] == str((tmp_path / "demo" / "search" / "report" / "index.html").resolve())
    assert again["n_clusters"] == summary["n_clusters"]
    assert again["modes"]["keep_artifacts"]["n_clusters"] == summary["modes"]["keep_artifacts"]["n_clusters"]
