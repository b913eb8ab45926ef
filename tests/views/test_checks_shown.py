"""Stability, artifact-class labels and merge suggestions as the explorer and the report show them."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from raregal.discovery.checks.per_cluster import describe_checks


def test_describe_checks():
    assert describe_checks({"stability": 0.4213, "unstable": True, "artifact_class": True}) == \
        "stability 0.42 (unstable) · artifact class"
    assert describe_checks({"stability": 0.9, "unstable": False, "artifact_class": False}) == "stability 0.90"
    assert describe_checks(pd.Series({"stability": np.nan, "unstable": False, "artifact_class": False})) == ""
    assert describe_checks({}) == ""


@pytest.fixture(scope="module")
def checked_run(tiny_run_dir, tmp_path_factory):
    """The tiny run with the checks' fields: cluster 1 unstable, cluster 2 an artifact class, one merge pair."""
    from raregal.discovery.checks.merge import merge_suggestions

    root = tmp_path_factory.mktemp("checked")
    run = root / "run"
    shutil.copytree(tiny_run_dir, run)
    summary = json.loads((run / "summary.json").read_text())
    for entry in summary["clusters"]:
        k = entry["cluster"]
        entry.update(stability=0.35 if k == 1 else 0.95, unstable=k == 1, artifact_class=k == 2,
                     mean_artifact_fraction=0.6 if k == 2 else 0.05)
    clusters = pd.read_parquet(run / "clusters.parquet")
    kept = clusters[clusters["kept"]]
    tree = pd.read_parquet(run / "condensed_tree.parquet")
    nodes = np.array([c["tree_node"] for c in summary["clusters"]])
    merges = merge_suggestions(kept[[f"umap5_{j}" for j in range(5)]].to_numpy(), kept["cluster"].to_numpy(),
                               tree, nodes, max_tree_distance=99)
    assert len(merges), "the tiny run should give at least one suggestion with a loose tree criterion"
    summary["merge_suggestions"] = merges.to_dict(orient="records")
    summary["stability"] = {"repeats": 3, "seeds": [1, 2, 3], "unstable_below": 0.6, "n_unstable": 1}
    summary["artifact_classes"] = [2]
    (run / "summary.json").write_text(json.dumps(summary))
    return run, merges


def test_explorer_shows_stability_and_artifact_class(checked_run):
    from raregal.views.explore import panels
    from raregal.views.explore.data import ExplorerData
    from raregal.runs.with_images import load_run

    run, _ = checked_run
    data = ExplorerData(load_run(run), max_points=50, neighbours=False)
    assert "stability 0.35 (unstable)" in panels.cluster_panel(data, 1)
    assert "artifact class" in panels.cluster_panel(data, 2)
    assert "stability 0.95" in panels.cluster_panel(data, 0) and "unstable" not in panels.cluster_panel(data, 0)


def test_report_shows_checks_and_merge_pairs_side_by_side(checked_run, tmp_path):
    from raregal.views.report import build_report

    run, merges = checked_run
    page = build_report(run, out=tmp_path / "report", progress=False).read_text()
    assert f"Merge suggestions ({len(merges)})" in page
    a, b = int(merges.iloc[0]["cluster_a"]), int(merges.iloc[0]["cluster_b"])
    block = page.split(f'<div class="merge-pair" data-a="{a}" data-b="{b}"')[1].split('<div class="merge-pair"')[0]
    block = block.split('<section id="downloads">')[0]
    assert f"thumbs/c{a}_" in block and f"thumbs/c{b}_" in block  # both galleries in the pair's block
    assert block.index(f"thumbs/c{a}_") < block.index(f"thumbs/c{b}_")
    assert "in the condensed tree" in block and "median distance between clusters" in block
    assert "stability 0.35 (unstable)" in page and "artifact class" in page
    assert page.count('class="checks"') >= 2 * len(json.loads((run / "summary.json").read_text())["clusters"])


def test_report_without_checks_has_no_merge_section(tiny_report):
    page = tiny_report.read_text()
    assert 'id="merges"' not in page and "stability" not in page
