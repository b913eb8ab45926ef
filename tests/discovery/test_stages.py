"""A search keeps its finished stages; a rerun (also after kill -9) resumes from them with the same bits."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from raregal.discovery.estimator import RareClassSearch
from raregal.discovery.stages import StageStore
from raregal.evaluation.planted import make_planted

SMALL = dict(n_neighbors=10, min_samples=10, min_cluster_size=10, umap_n_epochs=30, map_2d_epochs=10)


@pytest.fixture(scope="module")
def X():
    frame = make_planted(n=1500, dim=16, group_fractions=(0.03, 0.05), seed=3)
    return frame.filter(like="feat_").to_numpy(np.float32)


def _same(a: RareClassSearch, b: RareClassSearch) -> None:
    assert np.array_equal(a.knn_[0], b.knn_[0]) and np.array_equal(a.knn_[1], b.knn_[1])
    assert np.array_equal(a.embedding_, b.embedding_) and np.array_equal(a.embedding_2d_, b.embedding_2d_)
    assert np.array_equal(a.labels_, b.labels_) and np.array_equal(a.probabilities_, b.probabilities_)
    pd.testing.assert_frame_equal(a.condensed_tree_, b.condensed_tree_)
    assert np.array_equal(a.cluster_persistence_, b.cluster_persistence_) and a.n_clusters_ == b.n_clusters_


def test_a_rerun_resumes_every_stage_with_the_same_bits(X, tmp_path):
    plain = RareClassSearch(**SMALL).fit(X)
    first = RareClassSearch(**SMALL, stages_dir=tmp_path / "stages").fit(X)
    assert first.resumed_stages_ == [] and sorted(p.name for p in (tmp_path / "stages").iterdir()) == [
        "hdbscan.npz", "knn.npz", "umap2.npz", "umap5.npz"]
    again = RareClassSearch(**SMALL, stages_dir=tmp_path / "stages").fit(X)
    assert again.resumed_stages_ == ["knn", "umap5", "umap2", "hdbscan"]
    _same(plain, first)
    _same(plain, again)
    assert plain.n_clusters_ >= 2


def test_a_changed_parameter_or_table_redoes_exactly_the_stages_it_touches(X, tmp_path):
    RareClassSearch(**SMALL, stages_dir=tmp_path / "s").fit(X)
    hdb = RareClassSearch(**{**SMALL, "min_samples": 15}, stages_dir=tmp_path / "s").fit(X)
    assert hdb.resumed_stages_ == ["knn", "umap5", "umap2"]  # only HDBSCAN is redone
    _same(RareClassSearch(**{**SMALL, "min_samples": 15}).fit(X), hdb)
    seed = RareClassSearch(**SMALL, random_state=1, stages_dir=tmp_path / "s").fit(X)
    assert seed.resumed_stages_ == []
    other = X.copy()
    other[0, 0] += 1e-3
    assert RareClassSearch(**SMALL, random_state=1, stages_dir=tmp_path / "s").fit(other).resumed_stages_ == []


def test_a_damaged_stage_is_computed_again(X, tmp_path, caplog):
    RareClassSearch(**SMALL, stages_dir=tmp_path / "s").fit(X)
    path = tmp_path / "s" / "umap5.npz"
    path.write_bytes(path.read_bytes()[:100])
    again = RareClassSearch(**SMALL, stages_dir=tmp_path / "s").fit(X)
    assert again.resumed_stages_ == ["knn", "umap2", "hdbscan"]  # only umap5 is redone, with the same bits
    assert "umap5.npz: cannot be read" in caplog.text
    _same(RareClassSearch(**SMALL).fit(X), again)


def test_keys_follow_the_dependencies(X):
    base = dict(n_neighbors=10, metric="euclidean", layout="deterministic", seed=0, n_components=5,
                umap_init="pca", umap_n_epochs=None, umap_min_dist=0.1, device="cpu", map_2d=True,
                map_2d_epochs=50, min_samples=10, min_cluster_size=10, cluster_selection_method="leaf",
                hdbscan_backend="fast_hdbscan")
    a = StageStore("unused", X, base).keys
    b = StageStore("unused", X, {**base, "map_2d_epochs": 20}).keys
    assert [s for s in a if a[s] != b[s]] == ["umap2"]
    c = StageStore("unused", X, {**base, "n_neighbors": 12}).keys
    assert all(a[s] != c[s] for s in a)


@pytest.mark.slow
def test_raregal_search_killed_between_stages_resumes_with_the_same_result(tmp_path):
    table = make_planted(n=9000, dim=32, group_fractions=(0.02, 0.03), seed=5)  # above 8,192: deterministic
    table.to_parquet(tmp_path / "reps.parquet")
    flags = ["--n-neighbors", "15", "--min-samples", "40", "--no-report"]
    cmd = [sys.executable, "-m", "raregal", "search", str(tmp_path / "reps.parquet"), *flags]
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "run")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    umap5 = tmp_path / "run" / ".stages" / "umap5.npz"
    deadline = time.time() + 240
    while not umap5.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert umap5.exists(), "the run kept its 5-D layout"
    proc.send_signal(signal.SIGKILL)  # between stages: k-NN graph and 5-D layout kept, the rest not yet
    proc.wait()
    assert not (tmp_path / "run" / "clusters.parquet").exists()
    done = subprocess.run([*cmd, "--out", str(tmp_path / "run")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stderr and not (tmp_path / "run" / ".stages").exists()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["resumed_stages"][:2] == ["knn", "umap5"]
    whole = subprocess.run([*cmd, "--out", str(tmp_path / "whole")], env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    resumed = pd.read_parquet(tmp_path / "run" / "clusters.parquet")
    uninterrupted = pd.read_parquet(tmp_path / "whole" / "clusters.parquet")
    pd.testing.assert_frame_equal(resumed, uninterrupted)
    assert json.loads((tmp_path / "whole" / "summary.json").read_text())["resumed_stages"] == []


def test_the_knn_graph_is_set_aside_while_the_layouts_run_and_read_back(X, tmp_path, monkeypatch):
    """With stages kept, the layouts run on the spilled fuzzy graph and no k-NN graph is held meanwhile."""
    import raregal.discovery.estimator as estimator

    seen, real = [], estimator.umap_embed

    def spy(X, n_components, **kw):
        seen.append((kw["knn"] is None, getattr(kw.get("fuzzy_graph"), "knn", "no graph") is None))
        return real(X, n_components, **kw)

    monkeypatch.setattr(estimator, "umap_embed", spy)
    staged = RareClassSearch(**SMALL, layout="deterministic", stages_dir=tmp_path / "s").fit(X)
    assert seen == [(True, True), (True, True)]  # the 5-D layout and the 2-D map
    seen.clear()
    plain = RareClassSearch(**SMALL, layout="deterministic").fit(X)
    assert seen == [(False, False), (False, False)]  # without stages the graph stays in memory
    _same(plain, staged)  # the same bits, and knn_ is back after the fit
    assert staged.resumed_stages_ == []
    (tmp_path / "s" / "hdbscan.npz").unlink()
    seen.clear()
    again = RareClassSearch(**SMALL, layout="deterministic", stages_dir=tmp_path / "s").fit(X)
    assert seen == [] and again.resumed_stages_ == ["knn", "umap5", "umap2"]  # only HDBSCAN, without the graph

    import weakref

    loaded, real_pair, real_leaves = [], estimator._knn_pair, estimator.leaf_clusters

    def pair(arrays):  # every k-NN graph the fit reads, watched by weak references
        out = real_pair(arrays)
        loaded.extend(weakref.ref(a) for a in out)
        return out

    def no_knn_while_clustering(*args, **kw):
        assert loaded and all(ref() is None for ref in loaded)  # freed, not merely unnamed
        return real_leaves(*args, **kw)

    monkeypatch.setattr(estimator, "_knn_pair", pair)
    monkeypatch.setattr(estimator, "leaf_clusters", no_knn_while_clustering)
    (tmp_path / "s" / "hdbscan.npz").unlink()
    again = RareClassSearch(**SMALL, layout="deterministic", stages_dir=tmp_path / "s")
    again.fit(X)
    _same(plain, again)


@pytest.mark.parametrize("map_2d", [True, False])
def test_a_kept_map_that_cannot_be_read_is_computed_again_from_the_kept_graph(X, tmp_path, map_2d):
    """Its key reads, its array does not: the k-NN graph set aside comes back from the stages for it."""
    import zipfile

    params = dict(**SMALL, layout="deterministic", map_2d=map_2d)
    first = RareClassSearch(**params, stages_dir=tmp_path / "s").fit(X)
    path = tmp_path / "s" / "umap5.npz"
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    members["embedding.npy"] = members["embedding.npy"][:200]
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    again = RareClassSearch(**params, stages_dir=tmp_path / "s").fit(X)
    assert "umap5" not in again.resumed_stages_ and "hdbscan" in again.resumed_stages_
    assert np.array_equal(first.embedding_, again.embedding_) and np.array_equal(first.labels_, again.labels_)
    assert np.array_equal(first.knn_[0], again.knn_[0])


def test_a_new_revision_of_the_layout_is_not_resumed_from_an_older_one(X, monkeypatch):
    import raregal.discovery.stages as stages

    params = dict(n_neighbors=10, metric="euclidean", layout="deterministic", seed=0, n_components=5)
    before = StageStore("unused", X, params).keys
    monkeypatch.setitem(stages.REVISION, "umap5", stages.REVISION["umap5"] + 1)
    after = StageStore("unused", X, params).keys
    assert before["knn"] == after["knn"] and all(before[s] != after[s] for s in ("umap5", "umap2", "hdbscan"))


def test_the_time_left_follows_each_stage_s_growth_with_the_catalogue(X, tmp_path, caplog):
    from raregal.discovery import stages

    # the model gives the measured k-NN graph of 8.7M (3,351 s) from 1M's, where 1M's shares gave 11 h
    assert abs(stages.stage_seconds("knn", 8_700_000) - 3351) < 0.02 * 3351
    model = {s: stages.stage_seconds(s, 8_700_000) for s in stages.STAGES}
    assert stages.seconds_left({"knn": 2 * model["knn"]}, ["umap5", "hdbscan"], 8_700_000) == pytest.approx(
        2 * (model["umap5"] + model["hdbscan"]))  # a machine twice as slow: twice the time left
    assert model["knn"] / sum(model.values()) > 2 * stages.stage_seconds("knn", 632_000) / sum(
        stages.stage_seconds(s, 632_000) for s in stages.STAGES)  # the graph's share grows with N
    with caplog.at_level("INFO", logger="raregal"):
        RareClassSearch(**SMALL, map_2d=False, stages_dir=tmp_path / "s").fit(X)
    said = [line for line in caplog.messages if "left (" in line]
    assert len(said) == 2 and said[0].startswith("knn") and said[0].endswith("left (umap5, hdbscan)")  # no 2-D map
    assert said[1].startswith("umap5") and said[1].endswith("left (hdbscan)")
