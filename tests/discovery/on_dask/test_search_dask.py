"""``raregal search --dask``: the search on a Dask LocalCluster, against the one-machine search."""

import json

import numpy as np
import pandas as pd
import pytest

from raregal.cli import main
from raregal.discovery.on_dask.search import search_dask
from raregal.evaluation.planted import make_planted

# min_samples 50, not less: with a small min_samples, leaf selection splits the large groups the sample
# keeps whole into sub-leaves (measured: 0 of 3 groups at 20 against 2 of 3 at 50, one machine 2 at both)
PARAMS = {"min_samples": 50, "seed": 0}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A planted table of 24k galaxies in 4 Parquet parts; groups of 72-240 galaxies."""
    root = tmp_path_factory.mktemp("dask_search") / "reps"
    root.mkdir()
    frame = make_planted(n=24_000, dim=16, group_fractions=(0.003, 0.006, 0.01), seed=2)
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), 4)):
        frame.iloc[rows].to_parquet(root / f"part-{i}.parquet", index=False)
    return root


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def result(table, client, tmp_path_factory):
    stages = tmp_path_factory.mktemp("stages")
    return search_dask(table, PARAMS, client, sample_size=5000, stages_dir=stages), stages


def test_rare_groups_stay_whole_in_the_sample_and_are_recovered_as_on_one_machine(result, table):
    import raregal

    res, _ = result
    one = raregal.search(str(table), **PARAMS).run.summary["metrics"]
    table = res.run.clusters
    info = res.run.summary["distributed"]
    assert info["n_placed"] > 0 and abs(info["n_fitted"] - 5000) < 300
    assert 1 <= info["knn"]["rows_sent_per_row"] <= info["knn"]["n_blocks"]  # the graph's network cost
    assert 6 <= info["intrinsic_dimension"] <= 10  # make_planted's bulk is 8-dimensional
    groups = table["true_class"].str.startswith("planted")
    assert table.loc[groups, "fitted"].all()  # the density-biased draw kept every member of every group
    assert table.loc[~groups & table["kept"], "fitted"].mean() < 0.5  # the bulk was thinned
    metrics = res.run.summary["metrics"]
    assert metrics["n_recovered"] >= one["n_recovered"] >= 2, (metrics["classes"], one["classes"])
    assert metrics["bulk_fraction_clustered"] <= one["bulk_fraction_clustered"] + 0.01
    assert np.isfinite(table.loc[table["kept"], ["umap5_0", "umap2_0"]].to_numpy()).all()
    assert table.loc[~table["kept"], "cluster"].eq(-1).all()


def test_the_same_seed_gives_the_same_clusters_with_one_worker(result, table, tmp_path):
    from distributed import Client, LocalCluster

    res, _ = result
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as one:
        again = search_dask(table, PARAMS, one, sample_size=5000)
    a, b = res.run.clusters, again.run.clusters
    assert (a["fitted"] == b["fitted"]).all()
    assert (a["cluster"] == b["cluster"]).all()
    np.testing.assert_array_equal(a["umap5_0"].to_numpy(), b["umap5_0"].to_numpy())


def test_a_rerun_resumes_from_the_kept_stages(result, table, client):
    res, stages = result
    assert (stages / "dask_density.npz").exists()
    again = search_dask(table, PARAMS, client, sample_size=5000, stages_dir=stages)
    assert again.run.summary["distributed"]["resumed_density"] is True
    assert set(again.estimator.resumed_stages_) == {"knn", "umap5", "umap2", "hdbscan"}
    assert (again.run.clusters["cluster"] == res.run.clusters["cluster"]).all()


def test_all_galaxies_are_fitted_when_the_sample_holds_them(table, client):
    res = search_dask(table, PARAMS, client, sample_size=50_000)
    assert res.run.summary["distributed"]["n_placed"] == 0
    assert res.run.clusters.loc[res.run.clusters["kept"], "fitted"].all()


@pytest.mark.slow
def test_cli_writes_a_run_with_every_galaxy(table, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", str(table), "--out", str(out), "--min-samples", "50", "--no-report",
                 "--dask", "local", "--dask-workers", "1", "--dask-sample", "5000"]) == 0
    printed = capsys.readouterr().out
    assert "were placed" in printed and "classes (recall" in printed
    clusters = pd.read_parquet(out / "clusters.parquet")
    assert len(clusters) == 24_000 and clusters["fitted"].sum() < 6000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["distributed"]["n_placed"] == 24_000 - summary["counts"]["input"] + summary["counts"]["kept"] \
        - summary["distributed"]["n_fitted"]
    assert not (out / ".stages").exists()


@pytest.mark.parametrize("args, flag", [(["--dask", "local", "--dask-sample", "10"], "--dask-sample"),
                                        (["--dask", "local", "--dask-workers", "0"], "--dask-workers"),
                                        (["--dask-sample", "5000"], "--dask"),
                                        (["--dask", "local", "--metric", "manhattan"], "--metric"),
                                        (["--dask", "local", "--n-neighbors", "2"], "--n-neighbors")])
def test_cli_names_the_flag_at_fault_before_any_cluster_starts(table, tmp_path, capsys, args, flag):
    code = main(["search", str(table), "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert code == 2 and any(f"{flag}{end}" in err for end in (" ", ":", "=")), err
    assert not (tmp_path / "run").exists()


def test_cli_refuses_a_table_that_is_not_parquet(table, tmp_path, capsys):
    csv = tmp_path / "reps.csv"
    pd.read_parquet(table / "part-0.parquet").to_csv(csv, index=False)
    code = main(["search", str(csv), "--out", str(tmp_path / "run"), "--dask", "local"])
    err = capsys.readouterr().err
    assert code == 2 and "--dask reads a Parquet table" in err, err


def test_many_blocks_give_the_same_densities(table, client, monkeypatch):
    from raregal.discovery.config import config_from_dict
    from raregal.discovery.on_dask import search

    config = config_from_dict(PARAMS)
    data = search.read(client, table, config)
    one = search.row_density(client, data.X, data.offsets, 50, "euclidean", 0, stats=(stats_one := {}))
    monkeypatch.setattr(search, "BLOCK_ROWS", 2500)
    many = search.row_density(client, data.X, data.offsets, 50, "euclidean", 0, stats=(stats_many := {}))
    assert stats_one["n_blocks"] == 1 and stats_many["n_blocks"] >= 4
    assert 1 < stats_many["rows_sent_per_row"] <= stats_many["n_blocks"]
    assert np.mean(one[0] == many[0]) > 0.999 and one[1] == pytest.approx(many[1], rel=1e-6)


def test_no_clusters_still_places_every_galaxy(table, client):
    res = search_dask(table, {**PARAMS, "min_samples": 2000}, client, sample_size=5000)
    clusters = res.run.clusters
    assert res.n_clusters == 0 and (clusters["cluster"] == -1).all()
    assert np.isfinite(clusters.loc[clusters["kept"], "umap5_0"]).all()


def test_an_empty_part_and_another_campaign(tmp_path, client):
    frame = make_planted(n=6000, dim=16, group_fractions=(0.02,), seed=4)
    frame = frame.rename(columns={c: c.replace("smooth-or-featured_", "smooth-or-featured-dr8_")
                                  .replace("disk-edge-on_", "disk-edge-on-dr8_") for c in frame.columns})
    frame.loc[frame.index[:40], "smooth-or-featured-dr8_artifact_fraction"] = 0.9  # artifacts the cut removes
    folder = tmp_path / "reps"
    folder.mkdir()
    frame.iloc[:3000].to_parquet(folder / "part-0.parquet", index=False)
    frame.iloc[:0].to_parquet(folder / "part-1.parquet", index=False)
    frame.iloc[3000:].to_parquet(folder / "part-2.parquet", index=False)
    res = search_dask(folder, {"min_samples": 20, "campaign": "dr8"}, client, sample_size=2000)
    one = __import__("raregal").search(frame, min_samples=20, campaign="dr8")
    assert res.counts == one.counts
    assert res.run.summary["metrics"]["n_recovered"] >= 1
@pytest.mark.slow
def test_cli_killed_between_stages_resumes_with_the_same_clusters(table, result, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    res, _ = result
    cmd = [sys.executable, "-m", "raregal", "search", str(table), "--out", str(tmp_path / "run"), "--min-samples",
           "50", "--no-report", "--dask", "local", "--dask-workers", "1", "--dask-sample", "5000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    umap5 = tmp_path / "run" / ".stages" / "umap5.npz"
    deadline = time.time() + 240
    while not umap5.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert umap5.exists(), "the run kept its densities, k-NN graph and 5-D layout"
    os.killpg(proc.pid, signal.SIGKILL)  # the client and its LocalCluster's workers, between stages
    proc.wait()
    assert (tmp_path / "run" / ".stages" / "dask_density.npz").exists()
    assert not (tmp_path / "run" / "clusters.parquet").exists()
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["distributed"]["resumed_density"] is True
    assert summary["resumed_stages"][:2] == ["knn", "umap5"]
    clusters = pd.read_parquet(tmp_path / "run" / "clusters.parquet")
    assert (clusters["cluster"].to_numpy() == res.run.clusters["cluster"].to_numpy()).all()
    assert (clusters["fitted"].to_numpy() == res.run.clusters["fitted"].to_numpy()).all()
