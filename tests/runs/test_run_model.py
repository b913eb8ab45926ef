"""The run model (raregal.runs.model): one typed Run, written and read by one module."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from raregal.runs import folder
from raregal.discovery.checks.per_cluster import ClusterChecks
from raregal.errors import InputError
from raregal.discovery.checks.merge import COLUMNS
from raregal.runs.model import INFO_DTYPES, Run, is_run_dir, read_run, write_run
from raregal.discovery.checks.stability import Stability


def assert_runs_equal(a: Run, b: Run) -> None:
    pd.testing.assert_frame_equal(a.clusters, b.clusters)
    pd.testing.assert_frame_equal(a.cluster_info, b.cluster_info)
    for x, y in ((a.tree, b.tree), (a.merges, b.merges)):
        assert (x is None) == (y is None)
        if x is not None:
            pd.testing.assert_frame_equal(x, y)
    assert a.parameters == b.parameters and a.timings == b.timings and a.summary == b.summary


def full_run() -> Run:
    """A run with every optional part: checks' columns (a NaN fraction), merges (a NaN λ), a tree."""
    clusters = pd.DataFrame({"id_str": [f"g{i}" for i in range(6)], "cluster": [1, 0, 0, 1, -1, -1],
                             "probability": np.float32([0.9, 0.8, 0.7, 0.6, 0, 0]),
                             "kept": [True, True, True, True, True, False],
                             "umap2_0": np.float32([0, 1, 2, 3, 4, np.nan]), "stability": np.float32([0.5, 1, 1, 0.5,
                                                                                                       np.nan, np.nan])})
    info = pd.DataFrame({"cluster": [1, 0], "size": [2, 2], "persistence": [0.25, 0.5], "tree_node": [8, 7],
                         "mean_probability": [0.75, 0.75], "stability": [0.5, 1.0], "unstable": [True, False],
                         "artifact_class": [False, True], "mean_artifact_fraction": [np.nan, 0.4]})
    merges = pd.DataFrame([{"cluster_a": 0, "cluster_b": 1, "size_a": 2, "size_b": 2, "reason": "tree",
                            "tree_distance": 2, "join_lambda": np.nan, "join_density_ratio": 0.5,
                            "centroid_distance": 1.5, "centroid_ratio": 0.75, "separation": 0.1}], columns=COLUMNS)
    tree = pd.DataFrame({"parent": np.int64([6, 6, 7]), "child": np.int64([7, 8, 0]),
                         "lambda_val": [0.5, 0.5, 1.0], "child_size": np.int64([2, 2, 1])})
    return Run(clusters=clusters, cluster_info=info, tree=tree, merges=merges,
               parameters={"min_samples": 3, "features": None, "seed": 7},
               timings={"seconds": {"knn": 0.1}, "wall_seconds": 1.5},
               summary={"input": "/x/reps.parquet", "counts": {"input": 6, "kept": 5}, "artifact_classes": [0]})


def test_every_table_and_dict_round_trips(tmp_path):
    run = full_run()
    written = write_run(run, tmp_path / "run", command="test")
    assert written.path == tmp_path / "run"
    back = read_run(tmp_path / "run")
    assert_runs_equal(back, run)
    assert_runs_equal(back, written)
    assert back.cluster_info["cluster"].tolist() == [0, 1]  # sorted by id, typed
    assert dict(back.cluster_info.dtypes.astype(str)) == INFO_DTYPES
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["clusters"][0]["mean_artifact_fraction"] == 0.4 and on_disk["clusters"][1]["mean_artifact_fraction"] is None
    assert on_disk["merge_suggestions"][0]["join_lambda"] is None  # NaN is JSON null, read back as NaN
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        ".raregal.json", "clusters.parquet", "condensed_tree.parquet", "config.toml", "summary.json"]
    assert folder.folder_kind(tmp_path / "run") == "run" and is_run_dir(tmp_path / "run")


def test_the_tiny_run_round_trips(tiny_run_dir, tmp_path):
    run = read_run(tiny_run_dir)
    assert run.merges is None  # not computed: the report shows no merge section
    write_run(run, tmp_path / "again", command="test")
    assert_runs_equal(read_run(tmp_path / "again"), run)


def test_older_runs_read_with_real_bools(tiny_run_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_run_dir, old, ignore=shutil.ignore_patterns("report", "similar", ".raregal*"))
    summary = json.loads((old / "summary.json").read_text())
    summary["clusters"][0].update(stability=0.3, unstable=True)  # only one entry has the checks' keys
    del summary["clusters"][-1]  # and one cluster of clusters.parquet is not listed
    (old / "summary.json").write_text(json.dumps(summary))
    info = read_run(old).cluster_info
    assert info["unstable"].dtype == bool and info["unstable"].tolist() == [True] + [False] * (len(info) - 1)
    assert len(info) == summary["n_clusters"] and info["tree_node"].iloc[-1] == -1  # counted, no node recorded
    assert info["size"].iloc[-1] == (read_run(old).clusters["cluster"] == len(info) - 1).sum()


def test_write_run_goes_through_the_run_folder_rules(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="raregal did not write"):
        write_run(full_run(), mine, command="test")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    write_run(full_run(), tmp_path / "run", command="test")
    with pytest.raises(InputError, match="overwrite"):
        write_run(full_run(), tmp_path / "run", command="test")
    (tmp_path / "run" / "merge_suggestions.csv").write_text("stale\n")  # an earlier raregal's copy
    write_run(replace_merges(full_run(), None), tmp_path / "run", overwrite=True, command="test")
    assert not (tmp_path / "run" / "merge_suggestions.csv").exists()
    assert "merge_suggestions" not in json.loads((tmp_path / "run" / "summary.json").read_text())
    assert not is_run_dir(tmp_path / "mine") and not is_run_dir(pd.DataFrame())


def replace_merges(run: Run, merges) -> Run:
    from dataclasses import replace

    return replace(run, merges=merges)


def test_annotate_pairs_results_with_clusters_by_id():
    table = pd.DataFrame({"id_str": list("abcde"), "cluster": [2, -1, 0, 1, 2]})
    info = pd.DataFrame({"cluster": [2, 0, 1], "size": [2, 1, 1]})  # not in id order
    scores = np.array([0.1, 0.5, 0.9])
    artifacts = pd.DataFrame({"cluster": [2, 1, 0], "mean_artifact_fraction": [0.8, np.nan, 0.1],  # reversed
                              "fraction_artifacts": [1.0, np.nan, 0.0], "artifact_class": [True, False, False]})
    checks = ClusterChecks(stability=Stability(scores=scores, per_repeat=np.vstack([scores, scores]),
                                               matches=np.zeros((2, 3), int), seeds=[1, 2], n_clusters_per_repeat=[3, 3],
                                               seconds_per_repeat=[0.1, 0.1], unstable_below=0.6),
                           merges=pd.DataFrame(columns=COLUMNS), artifacts=artifacts)
    before = (table.copy(), info.copy())
    new_table, new_info, entries = checks.annotate(table, info)
    pd.testing.assert_frame_equal(table, before[0])  # nothing changed in place
    pd.testing.assert_frame_equal(info, before[1])
    np.testing.assert_allclose(new_table["stability"], [0.9, np.nan, 0.1, 0.5, 0.9])
    by_id = new_info.set_index("cluster")
    assert by_id["stability"].to_dict() == {0: 0.1, 1: 0.5, 2: 0.9}
    assert by_id["unstable"].to_dict() == {0: True, 1: True, 2: False}
    assert by_id["artifact_class"].to_dict() == {0: False, 1: False, 2: True}
    assert by_id.loc[2, "mean_artifact_fraction"] == 0.8 and np.isnan(by_id.loc[1, "mean_artifact_fraction"])
    assert new_info["unstable"].dtype == bool and new_info["artifact_class"].dtype == bool
    assert entries["artifact_classes"] == [2] and entries["stability"]["n_unstable"] == 2


def test_a_galaxy_without_a_cluster_number_is_unclustered_not_cluster_0():
    run = full_run()
    clusters = run.clusters.assign(cluster=run.clusters["cluster"].astype(float))
    clusters.loc[clusters.index[0], "cluster"] = np.nan
    assert replace_clusters(run, clusters).clusters["cluster"].iloc[0] == -1


def replace_clusters(run: Run, clusters) -> Run:
    from dataclasses import replace

    return replace(run, clusters=clusters)
