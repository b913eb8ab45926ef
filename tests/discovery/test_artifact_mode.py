"""Artifact mode: with --keep-artifacts, clusters the model calls artifacts are labelled artifact classes."""

import json

import numpy as np
import pandas as pd
import pytest

from raregal.discovery.checks.artifact_classes import artifact_classes
from raregal.evaluation.planted import make_planted
from raregal.runs.model import read_run
from raregal.discovery.pipeline import run_search

PARAMS = dict(n_neighbors=15, min_samples=10, min_cluster_size=15, umap_n_epochs=100, report=False)


def test_artifact_classes_by_hand():
    frac = np.array([0.9, 0.8, 0.1, 0.0, 0.4, 0.35, 0.0, np.nan, 0.5, 0.2])
    labels = np.array([0, 0, 0, 1, 2, 2, 2, 1, -1, 3])
    out = artifact_classes(frac, labels, cut=0.3)
    assert out["cluster"].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(out["mean_artifact_fraction"], [0.6, 0.0, 0.25, 0.2])
    np.testing.assert_allclose(out["fraction_artifacts"], [2 / 3, 0.0, 2 / 3, 0.0])
    # 0: mean above the cut; 2: mean below it but a majority at or above it
    assert out["artifact_class"].tolist() == [True, False, True, False]


@pytest.fixture(scope="module")
def reps(tmp_path_factory):
    frame = make_planted(n=2500, dim=16, group_fractions=(0.012, 0.02), artifact_group_fraction=0.015,
                                    seed=11)
    path = tmp_path_factory.mktemp("reps") / "reps.parquet"
    frame.to_parquet(path)
    return path


def test_keep_artifacts_labels_the_artifact_group(reps, tmp_path):
    summary = run_search(reps, tmp_path / "run", keep_artifacts=True, **PARAMS)
    table = pd.read_parquet(tmp_path / "run" / "clusters.parquet")
    truth = table[table["cluster"] >= 0].groupby("cluster")["true_class"].agg(lambda s: s.value_counts().index[0])
    flagged = {c["cluster"] for c in summary["clusters"] if c["artifact_class"]}
    assert flagged == set(truth.index[truth == "planted_artifact"]) and len(flagged) == 1
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["artifact_classes"] == sorted(flagged)
    k = flagged.pop()
    assert on_disk["clusters"][k]["mean_artifact_fraction"] >= 0.3
    assert all(c["mean_artifact_fraction"] < 0.3 for c in on_disk["clusters"] if c["cluster"] != k)


def test_without_keep_artifacts_there_are_no_artifact_classes(reps, tmp_path):
    summary = run_search(reps, tmp_path / "run", **PARAMS)
    run, frame = read_run(tmp_path / "run"), pd.read_parquet(reps)
    planted = run.clusters["true_class"] == "planted_artifact"
    assert planted.any() and not run.clusters.loc[planted, "kept"].any()  # the pre-filter dropped them
    assert summary["artifact_classes"] == [] and not run.cluster_info["artifact_class"].any()
    # the check still ran: each cluster's mean predicted artifact fraction is its members' mean in the input
    member_mean = frame["smooth-or-featured_artifact_fraction"].groupby(run.clusters["cluster"]).mean()
    info = run.cluster_info.set_index("cluster")
    np.testing.assert_allclose(info["mean_artifact_fraction"], member_mean.loc[info.index], atol=1e-6)  # stored to 6 places
    assert (info["mean_artifact_fraction"] < 0.3).all()
    assert not (tmp_path / "run" / "merge_suggestions.csv").exists()  # summary.json holds the only copy
    sizes = run.clusters[run.clusters["cluster"] >= 0]["cluster"].value_counts()
    assert len(run.merges) >= 1  # the bulk splits into leaves, which the tree suggests merging
    for m in run.merges.itertuples():  # each suggestion names two real clusters with their real sizes
        assert m.cluster_a != m.cluster_b and {m.cluster_a, m.cluster_b} <= set(info.index)
        assert (m.size_a, m.size_b) == (sizes[m.cluster_a], sizes[m.cluster_b])


def test_the_artifact_check_reads_the_campaign_the_search_names(reps, tmp_path):
    """A table with DR5 and DR8 fractions: the artifact classes are those of the campaign given."""
    frame = pd.read_parquet(reps)
    fractions = [c for c in frame.columns if c.endswith("_fraction")]
    dr5 = frame[fractions].rename(columns=lambda c: c.split("_")[0] + "-dr5_" + c.split("_", 1)[1])
    dr8 = dr5.rename(columns=lambda c: c.replace("-dr5_", "-dr8_")).assign(
        **{"smooth-or-featured-dr8_artifact_fraction": 0.0})
    both = tmp_path / "both.parquet"
    pd.concat([frame.drop(columns=fractions), dr5, dr8], axis=1).to_parquet(both)
    assert "smooth-or-featured-dr5_artifact_fraction" in dr5.columns
    flagged = {}
    for campaign in ("dr5", "dr8"):
        summary = run_search(both, tmp_path / campaign, keep_artifacts=True, campaign=campaign, **PARAMS)
        flagged[campaign] = summary["artifact_classes"]
    assert len(flagged["dr5"]) == 1 and flagged["dr8"] == []
