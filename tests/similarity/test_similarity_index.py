"""One similarity index (raregal.similarity.SimilarityIndex) behind `raregal similar` and the explorer's
'more like this': the run's metric and features, every row of the table (kept or not), the same answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from raregal.similarity import SimilarityIndex, similar

# A query galaxy q and look-alikes whose Euclidean and cosine rankings differ: "far" points the
# same way as q but is long, "short" is close to q but at 45 degrees.
VECTORS = {
    "q": [1.0, 0.0, 0.0], "far": [10.0, 1.0, 0.0], "long": [3.0, 0.0, 1.0], "short": [0.5, 0.5, 0.0],
    "side": [0.0, 1.0, 0.0], "back": [-1.0, 0.0, 0.0], "up": [-0.1, 0.2, 1.5], "down": [0.3, -1.0, -2.0],
}
COSINE_ORDER = ["far", "long", "short", "down", "side", "up", "back"]
EUCLID_ORDER = ["short", "side", "up", "back", "long", "down", "far"]


def _cos(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return 1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b)


def _write_run(root, metric="cosine", features=None, list_column=None, filtered=("far",)):
    """A small run directory over VECTORS (the galaxies in ``filtered`` dropped by the pre-filter)."""
    from raregal.atomic import write_json, write_parquet

    ids = list(VECTORS)
    X = np.array([VECTORS[i] for i in ids], np.float32)
    reps = pd.DataFrame({"id_str": ids})
    if list_column:
        reps[list_column] = list(X)
    else:
        reps = pd.concat([reps, pd.DataFrame(X, columns=[f"feat_{j}" for j in range(X.shape[1])])], axis=1)
    write_parquet(root / "reps.parquet", reps)
    kept = np.array([i not in filtered for i in ids])
    at = np.arange(len(ids), dtype=float)
    clusters = pd.DataFrame({"id_str": ids, "cluster": np.where(kept & (at < 3), 0, -1),
                             "probability": np.where(kept, 0.5, 0.0), "kept": kept,
                             "umap2_0": np.where(kept, at, np.nan), "umap2_1": np.where(kept, at % 3, np.nan)})
    write_parquet(root / "run" / "clusters.parquet", clusters)
    params = {"metric": metric, **({"features": features} if features else {})}
    write_json(root / "run" / "summary.json", {"input": str(root / "reps.parquet"), "parameters": params,
                                               "clusters": []})
    return root / "run"


def _explorer(run_dir):
    from raregal.views.explore.data import ExplorerData
    from raregal.runs.with_images import load_run

    return ExplorerData(load_run(run_dir), max_points=50)


def _explorer_ids(d, galaxy, k):
    rows, dist = d.similar(int(np.flatnonzero(d.ids == galaxy)[0]), k)
    return d.all_ids[rows].tolist(), dist


def test_cosine_run_is_ranked_by_cosine_in_similar_and_explorer(tmp_path):
    run = _write_run(tmp_path)
    assert [i for i, _ in sorted(((i, _cos(v, VECTORS["q"])) for i, v in VECTORS.items() if i != "q"),
                                 key=lambda t: t[1])] == COSINE_ORDER  # the test's premise
    out = similar(run, ids=["q"], k=7, progress=False)
    assert out["id_str"].tolist() == COSINE_ORDER != EUCLID_ORDER
    np.testing.assert_allclose(out["distance"], [_cos(VECTORS[i], VECTORS["q"]) for i in COSINE_ORDER],
                               rtol=1e-4, atol=1e-6)  # distances are cosine distances
    ids, dist = _explorer_ids(_explorer(run), "q", 7)
    assert ids == COSINE_ORDER
    np.testing.assert_allclose(dist, out["distance"], rtol=1e-6)
    # the same table searched as a Euclidean run ranks the other way
    (tmp_path / "euclid").mkdir()
    euclid = _write_run(tmp_path / "euclid", metric="euclidean")
    assert similar(euclid, ids=["q"], k=7, progress=False)["id_str"].tolist() == EUCLID_ORDER
    assert _explorer_ids(_explorer(euclid), "q", 7)[0] == EUCLID_ORDER


def test_filtered_galaxy_is_a_neighbour_in_the_explorer(tmp_path):
    from raregal.views.explore import panels

    d = _explorer(_write_run(tmp_path))
    assert d.n == len(VECTORS) - 1 and d.n_all == len(VECTORS)
    rows, _ = d.similar(int(np.flatnonzero(d.ids == "q")[0]), 3)
    assert rows[0] >= d.n and d.all_ids[rows[0]] == "far"  # dropped by the pre-filter, still the nearest
    assert len(d.thumbnail(int(rows[0]), 32)) > 0  # its tile has a (placeholder) thumbnail
    text = panels.galaxy_panel(d, int(np.flatnonzero(d.ids == "q")[0]), 3)
    assert "cosine distance" in text and "filtered" in text and "far" in text
    out = similar(tmp_path / "run", ids=["q"], k=3, progress=False)
    assert out["id_str"].iloc[0] == "far" and not out["kept"].iloc[0]


@pytest.mark.parametrize("named", [True, False])
def test_list_column_representation_in_the_explorer(tmp_path, named):
    """A representation held in one list column: named by the run's features, or the default 'features'."""
    run = _write_run(tmp_path, list_column="vec" if named else "features", features="vec" if named else None)
    d = _explorer(run)
    assert d.neighbours is not None
    assert _explorer_ids(d, "q", 7)[0] == COSINE_ORDER == similar(run, ids=["q"], k=7, progress=False)["id_str"].tolist()


def test_explorer_and_similar_give_the_same_neighbours(tiny_run_dir):
    from raregal.views.explore.data import ExplorerData
    from raregal.runs.with_images import load_run

    d = ExplorerData(load_run(tiny_run_dir), max_points=50)
    for row in (0, int(d.members(1)[0]), d.n - 1):
        ids, dist = _explorer_ids(d, d.ids[row], 15)
        out = similar(tiny_run_dir, ids=[d.ids[row]], k=15, progress=False)
        assert ids == out["id_str"].tolist()
        np.testing.assert_allclose(dist, out["distance"], rtol=1e-6)


def test_index_covers_all_rows_and_queries_by_rows_or_ids(tiny_run_dir):
    summary = json.loads((tiny_run_dir / "summary.json").read_text())
    reps = pd.read_parquet(summary["input"])
    index = SimilarityIndex.from_run(tiny_run_dir)
    assert len(index.X) == len(reps) and index.metric == "euclidean"
    assert list(index.table.columns) == ["id_str"]  # read only what it needs; the representation is in X
    by_id = index.query(ids=[reps["id_str"].iloc[5]], k=10)
    by_row = index.query([5], k=10)
    np.testing.assert_array_equal(by_id.rows, by_row.rows)
    assert 5 not in by_row.rows and (by_row.nearest == 5).all()
    X = reps[[f"feat_{j}" for j in range(16)]].to_numpy(np.float64)
    d = np.linalg.norm(X - X[5], axis=1)
    d[5] = np.inf
    np.testing.assert_array_equal(by_row.rows, np.argsort(d, kind="stable")[:10])
    np.testing.assert_allclose(by_row.distance, np.sort(d)[:10], rtol=1e-5)
    assert index.covers(["nope", reps["id_str"].iloc[0]]).tolist() == [False, True]


def test_correlation_metric_ranks_by_correlation():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 5)) * rng.uniform(0.5, 3, (60, 1)) + rng.uniform(-2, 2, (60, 1))
    frame = pd.DataFrame(X, columns=[f"feat_{j}" for j in range(5)]).assign(id_str=[f"g{i}" for i in range(60)])
    got = SimilarityIndex(frame, metric="correlation").query([0], k=10)
    r = np.corrcoef(X)[0]
    want = 1 - r
    want[0] = np.inf
    np.testing.assert_array_equal(got.rows, np.argsort(want, kind="stable")[:10])
    np.testing.assert_allclose(got.distance, np.sort(want)[:10], rtol=1e-4, atol=1e-6)


def test_unsupported_metric_is_said_not_ignored(tmp_path, caplog):
    """A manhattan run: `similar` refuses with the reason, the explorer works without 'more like this'."""
    from raregal.errors import InputError

    run = _write_run(tmp_path, metric="manhattan")
    with pytest.raises(InputError, match="manhattan"):
        similar(run, ids=["q"], k=3, progress=False)
    d = _explorer(run)
    assert d.neighbours is None and "manhattan" in caplog.text
    assert len(d.similar(0, 3)[0]) == 0
