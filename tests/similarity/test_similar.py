"""'Find more like these': nearest neighbours of query galaxies over the whole catalog."""

import numpy as np
import pandas as pd
import pytest

from raregal.cli import main
from raregal.errors import InputError
from raregal.evaluation.planted import make_planted
from raregal.discovery.pipeline import run_search
from raregal.similarity import NeighbourSearch, rank_neighbours, similar


@pytest.fixture(scope="module")
def frame():
    return make_planted(n=3000, dim=16, group_fractions=(0.01, 0.02), artifact_group_fraction=0.015,
                                   group_spread=0.3, seed=5)


def _split(frame, name):
    ids = frame.loc[frame["true_class"] == name, "id_str"].tolist()
    return ids[::2], set(ids[1::2])  # query, held back


@pytest.mark.parametrize("index", ["exact", "flat", "ivf"])
@pytest.mark.parametrize("query", ["nearest", "centroid"])
def test_held_back_members_come_first(frame, index, query):
    for name in ("planted_0", "planted_1"):
        q, held = _split(frame, name)
        out = similar(frame, ids=q, k=len(held), query=query, index=index, progress=False)
        assert list(out.columns[:3]) == ["id_str", "rank", "distance"]
        assert out["rank"].tolist() == list(range(1, len(held) + 1))
        assert np.all(np.diff(out["distance"]) >= 0)
        assert not set(out["id_str"]) & set(q)  # the query galaxies are never returned
        precision = np.mean([i in held for i in out["id_str"]])
        assert precision >= 0.9, (name, index, query, precision)
        assert (out["true_class"] == name).mean() == precision


def test_nearest_rule_matches_brute_force():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 6)).astype(np.float32)
    q = np.array([3, 17, 99, 250])
    rows, dist, nearest = rank_neighbours(X, q, 40, "nearest", "exact")
    d = np.sqrt(((X[:, None, :].astype(np.float64) - X[None, q, :]) ** 2).sum(-1))
    best = d.min(axis=1)
    best[q] = np.inf
    expect = np.argsort(best, kind="stable")[:40]
    np.testing.assert_array_equal(rows, expect)
    np.testing.assert_allclose(dist, best[expect], rtol=1e-5)
    np.testing.assert_array_equal(nearest, q[d[expect].argmin(axis=1)])
    # faiss's exact index agrees; the IVF index finds most of them
    flat = rank_neighbours(X, q, 40, "nearest", NeighbourSearch(X, "flat"))[0]
    np.testing.assert_array_equal(flat, expect)
    ivf = rank_neighbours(X, q, 40, "nearest", NeighbourSearch(X, "ivf", nlist=8, nprobe=4))[0]
    assert len(set(ivf) & set(expect)) >= 36


@pytest.fixture(scope="module")
def run_dir(frame, tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    frame.to_parquet(root / "reps.parquet")
    run_search(root / "reps.parquet", root / "run", n_neighbors=15, min_samples=10, min_cluster_size=15,
               umap_n_epochs=100, map_2d=False, report=False)
    return root / "run"


def test_searches_before_the_prefilter(frame, run_dir):
    """The artifact group is dropped by the pre-filter but similar() still finds its members."""
    q, held = _split(frame, "planted_artifact")
    out = similar(run_dir, ids=q, k=len(held), progress=False)
    hits = out["id_str"].isin(held)
    assert hits.mean() >= 0.8  # spread-out group (group_spread=0.3) in the bulk's outskirts: 0.86 measured
    assert not out.loc[hits, "kept"].any() and (out.loc[hits, "cluster"] == -1).all()


def test_cli_cluster_query_writes_table_and_gallery(run_dir, capsys):
    table = pd.read_parquet(run_dir / "clusters.parquet")
    k = int(table.loc[table["true_class"] == "planted_1", "cluster"].mode()[0])
    assert main(["similar", str(run_dir), "--cluster", str(k), "-k", "12"]) == 0
    csv = run_dir / "similar" / f"cluster_{k}.csv"
    out = pd.read_csv(csv)
    assert len(out) == 12 and out["rank"].tolist() == list(range(1, 13))
    members = set(table.loc[table["cluster"] == k, "id_str"])
    assert not set(out["id_str"]) & members and set(out["nearest_query"]) <= members
    # the CSV is what the Python API returns for the same query
    api = similar(run_dir, cluster=k, k=12, progress=False)
    assert out["id_str"].tolist() == api["id_str"].tolist()
    np.testing.assert_allclose(out["distance"], api["distance"], rtol=1e-6)
    printed = capsys.readouterr().out
    assert f"table: {csv}" in printed and f"gallery: {csv.with_suffix('.png')}" in printed
    assert printed.split("\n")[2].split()[:2] == ["1", out["id_str"].iloc[0]]  # rank 1 first in the printout
    from PIL import Image

    from raregal.views.report.similar_gallery import write_similar_gallery

    with Image.open(run_dir / "similar" / f"cluster_{k}.png") as im:  # the same picture the API's result gives
        shown = np.asarray(im.convert("RGB"))
    with Image.open(write_similar_gallery(api, run_dir / "api.png")[0]) as im:
        np.testing.assert_array_equal(shown, np.asarray(im.convert("RGB")))


def test_clear_errors(frame, run_dir):
    with pytest.raises(InputError, match="NOPE"):
        similar(frame, ids=["NOPE", frame["id_str"].iloc[0]], k=5)
    with pytest.raises(InputError, match="either a cluster"):
        similar(run_dir, cluster=0, ids=[frame["id_str"].iloc[0]], k=5)
    with pytest.raises(InputError, match="no cluster 999"):
        similar(run_dir, cluster=999, k=5)
    with pytest.raises(InputError, match="run directory"):
        similar(frame, cluster=0, k=5)
    with pytest.raises(InputError, match="positive"):
        similar(frame, ids=[frame["id_str"].iloc[0]], k=0)
    assert main(["similar", str(run_dir / "missing"), "--ids", "G0000001"]) == 2  # a table path that is not there


def test_gallery_shows_query_then_candidates(tiny_run_dir, tmp_path):
    from PIL import Image

    from raregal.views.report.similar_gallery import write_similar_gallery

    out = similar(tiny_run_dir, cluster=1, k=12, progress=False)
    assert len(out) == 12 and out["file_loc"].notna().all()
    png, bad = write_similar_gallery(out, tmp_path / "g.png", tile=64)
    with Image.open(png) as im:
        assert im.size[1] == 3 * (64 + 4) + 4  # one query row, then ranks 1-8 and 9-12
        assert np.asarray(im.convert("RGB")).std() > 10  # real thumbnails, not a blank canvas
    assert bad == 0  # cluster 1 and its look-alikes all have readable images in the fixture


def test_auto_index_choice(monkeypatch):
    import raregal.similarity as sim

    X = np.random.default_rng(1).standard_normal((2000, 8)).astype(np.float32)
    assert NeighbourSearch(X, "auto", n_queries=10_000).kind == "exact"  # small catalog
    monkeypatch.setattr(sim, "EXACT_BELOW", 1000)
    monkeypatch.setattr(sim, "IVF_WORTH", 1_000_000)
    assert NeighbourSearch(X, "auto", n_queries=10).kind == "exact"  # large catalog, small query
    assert NeighbourSearch(X, "auto", n_queries=1000).kind == "ivf"  # large catalog, big query
    with pytest.raises(InputError, match="unknown index"):
        NeighbourSearch(X, "hnsw")


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_neighbours_far_from_the_origin_stay_exact(kind):
    """float32 picks the candidates and float64 ranks them: a margin keeps the top k exact."""
    from raregal.similarity import NeighbourSearch

    rng = np.random.default_rng(0)
    X = (100.0 + 0.3 * rng.standard_normal((5000, 64))).astype(np.float32)  # a common offset, small spread
    Q = X[:200]
    X64 = X.astype(np.float64)
    truth = np.argsort(((Q.astype(np.float64)[:, None, :] - X64[None]) ** 2).sum(-1), axis=1, kind="stable")[:, :10]
    index = NeighbourSearch(X, kind, nlist=8, nprobe=8)
    dist, rows = index.search(Q, 10)
    missing = sum(len(set(t) - set(r)) for t, r in zip(truth, rows))
    assert missing == 0 and np.all(np.diff(dist, axis=1) >= 0)


def test_nprobe_is_checked_before_any_work_and_mixed_ids_are_strings(tmp_path, capsys):
    import raregal

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(30, 4)), columns=[f"feat_{i}" for i in range(4)])
    frame.insert(0, "id_str", [f"g{i}" for i in range(30)])
    frame.to_parquet(tmp_path / "reps.parquet")
    assert main(["similar", str(tmp_path / "reps.parquet"), "--ids", "g1", "--index", "ivf", "--nprobe", "0",
                 "--no-gallery", "--out", str(tmp_path / "near.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--nprobe 0: must be a positive integer") and len(err.splitlines()) == 1
    assert not (tmp_path / "near.csv").exists()
    frame["id_str"] = [1, "1x", *range(2, 30)]  # a DataFrame with ids of mixed types: all become strings
    near = raregal.similar(frame, ids=["1"], k=3)
    assert len(near) == 3 and "1" not in set(near["id_str"])
