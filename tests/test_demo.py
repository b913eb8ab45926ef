"""The shipped demo encoder and the end-to-end demo (synth -> embed -> search -> summary)."""

from __future__ import annotations

import fnmatch
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from raregal import schema
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
    from raregal.catalog import read_catalog
    from raregal.synth import RARE_CLASSES, make_survey

    out = tmp_path_factory.mktemp("demo_survey")
    make_survey(200, out, seed=11, class_fractions={c: 0.04 for c in RARE_CLASSES}, n_workers=1, progress=False)
    return read_catalog(out / "catalog.parquet")


def test_demo_encoder_predicts_the_votes_of_galaxies_it_never_saw(small_survey):
    from raregal.embed import embed_chunk

    table, skipped = embed_chunk(load_model("demo"), small_survey, batch_size=64)
    assert len(table) == len(small_survey) and skipped.empty
    votes = small_survey.set_index("id_str").loc[table["id_str"]]
    for answer in ("smooth-or-featured_smooth", "disk-edge-on_yes"):
        q = schema.question(answer.rsplit("_", 1)[0])
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
    for entry in on_disk["metrics"]["classes"].values():
        assert 0.0 <= entry["recall"] <= 1.0 and 0.0 <= entry["purity"] <= 1.0
    # both filter modes ran, each into its own run directory, and both are printed
    assert set(on_disk["modes"]) == {"paper", "keep_artifacts"}
    paper, art = on_disk["modes"]["paper"], on_disk["modes"]["keep_artifacts"]
    assert Path(paper["run_dir"]).name == "search" and Path(art["run_dir"]).name == "search_artifacts"
    assert (Path(art["run_dir"]) / "summary.json").exists() and not paper["keep_artifacts"] and art["keep_artifacts"]
    assert art["counts"]["kept"] >= paper["counts"]["kept"]  # keeping artifacts drops fewer galaxies
    assert on_disk["n_recovered"] == paper["n_recovered"] and on_disk["metrics"] == paper["metrics"]
    for entry in (paper, art):
        assert set(entry["passing_filter"]) <= set(entry["metrics"]["classes"])
        assert 0 <= entry["n_recovered_passing"] <= len(entry["passing_filter"])
        for c in entry["metrics"]["classes"].values():
            assert 0 <= c["n_kept"] <= c["n_true"] and c["passes_filter"] == (c["n_kept"] >= 0.5 * c["n_true"])
    text = format_summary(summary)
    assert text.count("PLANTED RARE CLASSES") == 2 and "--keep-artifacts" in text and "ring" in text
    # a rerun re-uses the survey and the embedding
    again = run_demo(tmp_path / "demo", config, progress=False)
    assert again["timing"]["seconds"]["embed"] < summary["timing"]["seconds"]["embed"] + 5
    assert again["n_clusters"] == summary["n_clusters"]
    assert again["modes"]["keep_artifacts"]["n_clusters"] == summary["modes"]["keep_artifacts"]["n_clusters"]
