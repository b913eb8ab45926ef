"""Cluster stability over UMAP/HDBSCAN seeds: Jaccard matching, scores, and the run directory fields."""

import json

import numpy as np
import pandas as pd
import pytest

from raregal.cli import build_parser
from raregal.discovery.config import config_from_dict
from raregal.errors import InputError
from raregal.evaluation.planted import make_planted
from raregal.discovery.pipeline import run_search
from raregal.discovery.checks.stability import best_jaccard, jaccard_matrix, repeat_seeds, score_against

PARAMS = dict(n_neighbors=15, min_samples=10, min_cluster_size=15, umap_n_epochs=100, report=False)


def test_jaccard_matrix_by_hand():
    a = np.array([0, 0, 0, 1, 1, -1, -1])
    b = np.array([1, 1, -1, 0, 0, 0, -1])
    jac = jaccard_matrix(a, b)
    # a0={0,1,2}, a1={3,4}; b0={3,4,5}, b1={0,1}
    np.testing.assert_allclose(jac, [[0.0, 2 / 3], [2 / 3, 0.0]])
    score, match = best_jaccard(a, b)
    np.testing.assert_allclose(score, [2 / 3, 2 / 3])
    np.testing.assert_array_equal(match, [1, 0])
    # renumbering the clusters changes nothing; no cluster at all scores 0
    perm = np.array([2, 0, 1])
    labels = np.array([0, 0, 1, 1, 2, 2, -1])
    assert best_jaccard(labels, np.where(labels >= 0, perm[labels], -1))[0].tolist() == [1.0, 1.0, 1.0]
    assert best_jaccard(labels, np.full(7, -1))[0].tolist() == [0.0, 0.0, 0.0]
    result = score_against(labels, [labels, np.where(labels == 2, -1, labels)], unstable_below=0.6)
    np.testing.assert_allclose(result.scores, [1.0, 1.0, 0.5])
    assert result.unstable.tolist() == [False, False, True]
    assert repeat_seeds(7, 3) == [8, 9, 10]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    frame = make_planted(n=3000, dim=16, group_fractions=(0.01, 0.015, 0.02), seed=3)
    path = tmp_path_factory.mktemp("reps") / "reps.parquet"
    frame.to_parquet(path)
    out = tmp_path_factory.mktemp("run") / "run"
    summary = run_search(path, out, stability=3, **PARAMS)
    return out, summary, frame


def _majority(table):
    members = table[table["cluster"] >= 0]
    return members.groupby("cluster")["true_class"].agg(lambda s: s.value_counts().index[0])


def test_planted_groups_are_stable_and_noise_clusters_are_not(run):
    out, summary, _ = run
    table = pd.read_parquet(out / "clusters.parquet")
    info = pd.DataFrame(summary["clusters"]).set_index("cluster")
    info["truth"] = _majority(table)
    planted = info[info["truth"].str.startswith("planted")]
    noise = info[info["truth"] == "bulk"]
    assert len(planted) == 3 and len(noise) >= 3
    assert (planted["stability"] >= 0.85).all(), planted
    assert not planted["unstable"].any()
    # clusters carved out of the smooth bulk move with the seed: the worst is flagged, most score lower
    assert noise["stability"].min() < 0.4 and noise["unstable"].any()
    assert noise["stability"].median() < planted["stability"].min() - 0.2
    assert (info["unstable"] == (info["stability"] < 0.6)).all()


def test_stability_in_the_run_directory(run):
    out, summary, _ = run
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["stability"]["seeds"] == [1, 2, 3]
    assert len(on_disk["stability"]["seconds_per_repeat"]) == 3
    assert on_disk["stability"]["n_unstable"] == sum(c["unstable"] for c in on_disk["clusters"])
    assert "stability" in on_disk["timing"]["seconds"]
    table = pd.read_parquet(out / "clusters.parquet")
    assert table.loc[table["cluster"] < 0, "stability"].isna().all()
    per_row = table[table["cluster"] >= 0].groupby("cluster")["stability"].first()
    np.testing.assert_allclose(per_row.to_numpy(), [c["stability"] for c in on_disk["clusters"]], atol=1e-4)
    assert on_disk["parameters"]["stability"] == 3


def test_repeats_are_reproducible_clones_on_the_same_graph(run):
    from raregal.discovery.estimator import RareClassSearch

    out, _, _ = run
    table = pd.read_parquet(out / "clusters.parquet")
    kept = table["kept"].to_numpy()
    frame = make_planted(n=3000, dim=16, group_fractions=(0.01, 0.015, 0.02), seed=3)
    X = frame.filter(like="feat_").to_numpy()[kept]
    est = RareClassSearch(n_neighbors=15, umap_n_epochs=100, min_samples=10, min_cluster_size=15, map_2d=False,
                          random_state=0).fit(X)
    a, b = est.refit_layout(X, 1), est.refit_layout(X, 1)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.random_state == 1 and est.random_state == 0 and a.knn_ is est.knn_  # a clone, on the same graph
    assert a.get_params() == {**est.get_params(), "random_state": 1}


def test_stability_flag_and_config():
    parser = build_parser()
    args = parser.parse_args(["search", "reps.parquet", "--out", "run", "--stability"])
    assert args.stability == 5
    assert parser.parse_args(["search", "reps.parquet", "--out", "run", "--stability", "2"]).stability == 2
    assert parser.parse_args(["search", "reps.parquet", "--out", "run"]).stability is None
    assert config_from_dict({}).stability == 0
    with pytest.raises(InputError, match="stability"):
        config_from_dict({"stability": -1})
    with pytest.raises(InputError, match="unstable_below"):
        config_from_dict({"unstable_below": 1.5})


def test_repeats_run_on_the_gpu_when_the_main_run_did(monkeypatch):
    """device='cuda': the repeats use cuML too (replaced here by the CPU libraries)."""
    import raregal.discovery.hdbscan_leaves as cluster
    import raregal.discovery.umap as reduce
    from raregal.discovery.estimator import RareClassSearch
    from raregal.discovery.checks.stability import cluster_stability

    calls = []

    def fake_umap(X, n_components, n_neighbors, **kw):
        calls.append(("umap", n_components, kw["random_state"]))
        kw.pop("knn")
        return reduce.umap_embed(X, n_components, n_neighbors, **kw)

    def fake_hdbscan(Y, *args):
        calls.append(("hdbscan",))
        return cluster._fit_fast_hdbscan(Y, *args)

    monkeypatch.setattr(reduce, "_umap_cuml", fake_umap)
    monkeypatch.setattr(cluster, "_fit_cuml", fake_hdbscan)
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (150, 8)), rng.normal(6, 1, (150, 8))]).astype(np.float32)
    est = RareClassSearch(n_neighbors=10, min_samples=5, min_cluster_size=10, map_2d=False, device="cuda",
                          umap_n_epochs=50, random_state=4).fit(X)
    calls.clear()
    result = cluster_stability(est, X, repeats=2, progress=False)
    assert calls == [("umap", 5, 5), ("hdbscan",), ("umap", 5, 6), ("hdbscan",)]
    assert result.scores.shape == (est.n_clusters_,) and result.seeds == [5, 6]
