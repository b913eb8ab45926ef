"""search_table: the search as a pure function of an in-memory table (issue #13 item 3)."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from raregal.discovery.config import SearchConfig
from raregal.evaluation.planted import make_planted
from raregal.errors import InputError
from raregal.runs.model import Run, read_run, write_run
from raregal.discovery.pipeline import SearchResult, run_search, search_table
from raregal.discovery.estimator import RareClassSearch

SMALL = dict(n_neighbors=10, min_samples=5, min_cluster_size=10, umap_n_epochs=60, report=False, seed=3)


@pytest.fixture(scope="module")
def frame():
    return make_planted(n=400, dim=8, group_fractions=(0.05, 0.08), artifact_group_fraction=0.03, seed=2)


@pytest.fixture(scope="module")
def result(frame, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cwd")
    before = frame.copy()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        out = search_table(frame, SMALL)
    assert not list(cwd.iterdir())  # nothing written anywhere
    pd.testing.assert_frame_equal(frame, before)  # nor the caller's table changed
    return out


def test_returns_the_fitted_estimator_and_the_run(result, frame):
    assert isinstance(result, SearchResult) and isinstance(result.run, Run)
    est = result.estimator
    assert isinstance(est, RareClassSearch) and est.n_features_in_ == 8
    assert est.get_params()["random_state"] == 3 and est.get_params()["n_neighbors"] == 10  # config -> params
    # the run keeps what was asked ("auto") and says what it chose (400 rows: umap-learn's on the exact graph)
    assert result.config == SearchConfig(**SMALL) and est.layout_ == result.run.summary["layout"] == "umap-learn"
    # the planted artifact group is dropped by the pre-filter; the estimator saw only the kept rows
    assert result.counts["input"] == 400 and result.counts["kept"] == int(result.kept.sum()) == len(est.labels_)
    assert not result.kept[frame["true_class"].to_numpy() == "planted_artifact"].any()
    clusters = result.run.clusters
    assert clusters["id_str"].tolist() == frame["id_str"].tolist()
    np.testing.assert_array_equal(result.labels[result.kept], est.labels_)
    assert (result.labels[~result.kept] == -1).all()
    assert result.n_clusters == est.n_clusters_ >= 2 and result.run.summary["metrics"]["n_classes"] == 3
    assert result.run.summary["input"] is None and result.run.summary["counts"] == result.counts
    assert result.run.parameters == SearchConfig(**SMALL).to_dict() and result.run.parameters["layout"] == "auto"
    assert {"read", "prefilter", "knn", "umap5", "hdbscan"} <= set(result.run.timings["seconds"])
    assert result.run.path is None


def _assert_same_run(a: Run, b: Run) -> None:
    pd.testing.assert_frame_equal(a.clusters, b.clusters)
    pd.testing.assert_frame_equal(a.cluster_info, b.cluster_info)
    pd.testing.assert_frame_equal(a.tree, b.tree)
    pd.testing.assert_frame_equal(a.merges, b.merges)
    assert a.parameters == b.parameters and a.timings == b.timings and a.summary == b.summary


def test_its_run_round_trips_through_write_run_and_read_run(result, tmp_path):
    written = write_run(result, tmp_path / "run")  # a SearchResult writes its Run
    assert written.path == tmp_path / "run"
    _assert_same_run(read_run(tmp_path / "run"), result.run)
    again = write_run(result.run, tmp_path / "again")  # or the Run itself
    _assert_same_run(read_run(again.path), read_run(written.path))
    with pytest.raises(TypeError, match="Run or a SearchResult"):
        write_run({"clusters": []}, tmp_path / "bad")


def test_labels_equal_run_search_for_the_same_table_and_seed(result, frame, tmp_path, caplog):
    frame.to_parquet(tmp_path / "reps.parquet")
    with caplog.at_level("INFO", logger="raregal"):
        summary = run_search(tmp_path / "reps.parquet", tmp_path / "run", SMALL)
    stages = [r.getMessage().split()[0] for r in caplog.records if "peak memory" in r.getMessage()]
    assert stages.count("read") == 1 and stages.index("read") < stages.index("prefilter")  # one line per stage
    on_disk = read_run(tmp_path / "run")
    np.testing.assert_array_equal(on_disk.clusters["cluster"].to_numpy(), result.labels)
    np.testing.assert_array_equal(on_disk.clusters["probability"].to_numpy(), result.run.clusters["probability"])
    pd.testing.assert_frame_equal(on_disk.cluster_info, result.run.cluster_info)
    assert summary["counts"] == result.counts and summary["n_clusters"] == result.n_clusters
    assert summary["input"] == str((tmp_path / "reps.parquet").resolve())  # run_search records its file


def test_run_search_builds_no_report_even_when_asked(frame, tmp_path):
    from PIL import Image

    Image.new("RGB", (16, 16), (40, 80, 120)).save(tmp_path / "img.png")
    frame.assign(file_loc=str(tmp_path / "img.png")).to_parquet(tmp_path / "reps.parquet")
    run_search(tmp_path / "reps.parquet", tmp_path / "run", {**SMALL, "report": True, "map_2d": False})
    assert (tmp_path / "run" / "clusters.parquet").is_file()
    assert not (tmp_path / "run" / "report").exists()  # the CLI and the demo build it


def test_search_does_not_import_the_report():
    code = ("import sys, raregal.discovery.pipeline; bad = sorted(m for m in sys.modules if m.startswith('raregal.views.report')); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_bad_tables_and_settings_fail_before_the_fit(frame, monkeypatch):
    monkeypatch.setattr(RareClassSearch, "fit", lambda self, X, y=None: pytest.fail("fitted a bad input"))
    with pytest.raises(InputError, match="the table: the table has no rows"):
        search_table(frame.iloc[:0], SMALL)
    with pytest.raises(InputError, match="unknown key"):
        search_table(frame, {**SMALL, "random_state": 1})  # settings are config keys (seed)
    with pytest.raises(InputError, match="NaN or infinite"):
        search_table(frame.assign(feat_0=np.where(np.arange(len(frame)) == 5, np.nan, frame["feat_0"])), SMALL)
    with pytest.raises(InputError, match="reps.parquet: .*duplicate"):
        search_table(pd.concat([frame, frame.iloc[:1]]), SMALL, source="reps.parquet")



def test_metric_and_cluster_selection_reach_umap_and_hdbscan(frame, monkeypatch):
    import raregal.discovery.estimator as search

    calls = {"umap": [], "hdbscan": [], "knn": []}

    def spy(name, real):
        def wrapped(*args, **kw):
            calls[name].append((args, kw))
            return real(*args, **kw)
        return wrapped

    monkeypatch.setattr(search, "umap_embed", spy("umap", search.umap_embed))
    monkeypatch.setattr(search, "leaf_clusters", spy("hdbscan", search.leaf_clusters))
    monkeypatch.setattr(search, "knn_graph", spy("knn", search.knn_graph))
    result = search_table(frame, {**SMALL, "metric": "cosine", "cluster_selection_method": "eom"})
    assert result.estimator.get_params()["metric"] == "cosine"
    (args, _), = calls["knn"]
    assert args[2] == "cosine"  # the k-NN graph in representation space
    assert [kw["metric"] for _, kw in calls["umap"]] == ["cosine", "cosine"]  # the 5-D and the 2-D layout
    (args, _), = calls["hdbscan"]
    assert args[1:3] == (5, 10) and args[4] == "eom"  # min_samples, min_cluster_size, selection
    assert result.run.parameters["metric"] == "cosine"
    assert result.run.parameters["cluster_selection_method"] == "eom"


def test_clashing_choices_fail_before_the_table_is_read(tmp_path):
    with pytest.raises(InputError, match="layout='deterministic' computes its own k-NN graph") as err:
        run_search(tmp_path / "no_such_table.parquet", tmp_path / "run", {"layout": "deterministic",
                                                                            "metric": "manhattan"})
    assert err.value.param == ("layout", "metric") and not (tmp_path / "run").exists()


def test_the_similarity_index_of_a_run_not_yet_written(result, frame, tmp_path):
    from raregal.similarity import SimilarityIndex

    path = tmp_path / "reps.parquet"
    frame.to_parquet(path)
    from dataclasses import replace

    run = replace(result.run, summary={**result.run.summary, "input": str(path)})
    assert run.path is None
    for source in (run, replace(result, run=run)):  # a Run with no folder yet, and the SearchResult holding it
        index = SimilarityIndex.from_run(source)
        found = index.query(ids=[frame["id_str"].iloc[0]], k=3)
        assert len(found.ids) == 3 and frame["id_str"].iloc[0] not in found.ids
