"""Shared test fixtures.

``tiny_run_dir`` (issue 5, reports and explorer): a small but complete run directory, written by
:func:`raregal.runs.model.write_run` like a search's, plus the representation table and PNG images
it points to, built directly from a seeded synthetic table so report/explorer tests do not depend
on the search stage. It holds 4 clusters found by a real
``hdbscan.HDBSCAN(cluster_selection_method='leaf')``, one ``id_str`` with HTML in it, one corrupt
and one missing image among the most confident members of a cluster.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

#: The id that must be shown as text, never run as markup.
TINY_EVIL_ID = "<script>alert(1)</script>"
#: (centre in 5-D, points, GZ answer made strong, image colour) for each planted group.
_TINY_GROUPS = [
    ((0, 0, 0, 0, 0), 70, "bar_strong_fraction", (230, 90, 60)),
    ((6, 0, 0, 0, 0), 60, "merging_merger_fraction", (80, 140, 255)),
    ((0, 6, 0, 0, 0), 55, "has-spiral-arms_yes_fraction", (120, 230, 120)),
    ((6, 6, 0, 0, 0), 50, "bulge-size_dominant_fraction", (240, 220, 90)),
]


def _tiny_fractions(rng, labels):
    """Per-question vote fractions (rows sum to 1 within each question), one answer raised per group."""
    from raregal.inputs import gz_trees

    out = {}
    for q in gz_trees.TREE:
        alpha = np.full(len(q.answers), 2.0)
        out.update({f"{a}_fraction": v for a, v in zip(q.answers, rng.dirichlet(alpha, size=len(labels)).T)})
    frame = pd.DataFrame(out)
    for g, (_, _, answer, _) in enumerate(_TINY_GROUPS):
        q = next(q for q in gz_trees.TREE if f"{answer[:-len('_fraction')]}" in q.answers)
        rows = labels == g
        cols = [f"{a}_fraction" for a in q.answers]
        frame.loc[rows, cols] *= 0.15
        frame.loc[rows, answer] += 0.85
    frame[gz_trees.SMOOTH_FRACTION] = frame[gz_trees.SMOOTH_FRACTION].clip(upper=0.45)
    return frame.astype(np.float32)


def _tiny_image(path: Path, colour, rng):
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (48, 48), (8, 8, 16))
    d = ImageDraw.Draw(im)
    r = int(rng.integers(9, 16))
    d.ellipse((24 - r, 24 - r // 2, 24 + r, 24 + r // 2), fill=colour)
    d.ellipse((21, 21, 27, 27), fill=(255, 255, 235))
    im = im.rotate(float(rng.uniform(0, 180)), fillcolor=(8, 8, 16))
    im.save(path)


def _tiny_points(rng):
    """(N, 5) float32 "UMAP" points of the planted groups and a sparse background, and each one's group (-1: none)."""
    pts, truth = [], []
    for g, (centre, n, _, _) in enumerate(_TINY_GROUPS):
        pts.append(np.asarray(centre, float) + rng.normal(0, 0.45, size=(n, 5)))
        truth += [g] * n
    n_bg = 45
    pts.append(rng.uniform(-3, 9, size=(n_bg, 5)) * [1, 1, 0.3, 0.3, 0.3])
    truth += [-1] * n_bg
    return np.vstack(pts).astype(np.float32), np.asarray(truth)


def _tiny_leaves(umap5):
    """hdbscan's leaf clusters of the points: (condensed tree, labels, probabilities, one row per cluster)."""
    import hdbscan

    est = hdbscan.HDBSCAN(min_cluster_size=20, min_samples=5, cluster_selection_method="leaf",
                          approx_min_span_tree=False, core_dist_n_jobs=1).fit(umap5)
    tree = est.condensed_tree_.to_pandas()[["parent", "child", "lambda_val", "child_size"]]
    labels, probs = est.labels_.astype(np.int64), est.probabilities_.astype(np.float32)
    points = tree[tree.child_size == 1]
    info = []
    for k in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == k)
        node = int(points.parent[points.child.isin(members)].min())
        info.append({"cluster": k, "size": int(len(members)), "persistence": float(est.cluster_persistence_[k]),
                     "tree_node": node, "mean_probability": float(probs[members].mean())})
    return tree, labels, probs, pd.DataFrame(info)


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory) -> Path:
    """A run directory of ~280 kept + 20 filtered galaxies in 4 leaf clusters, with images and reps."""
    from raregal.atomic import write_parquet
    from raregal.runs.model import Run, write_run

    rng = np.random.default_rng(5)
    root = tmp_path_factory.mktemp("tiny_run")
    img_dir = root / "images"
    img_dir.mkdir()

    umap5, truth = _tiny_points(rng)
    n_kept = len(umap5)
    tree, labels, probs, info = _tiny_leaves(umap5)
    n_clusters = len(info)
    assert n_clusters >= 3, "tiny fixture should hold several clusters"

    n_drop = 20  # rows the pre-filter removed: in clusters.parquet with kept=False
    n = n_kept + n_drop
    ids = np.array([f"gal_{i:04d}" for i in range(n)], dtype=object)
    kept = np.r_[np.ones(n_kept, bool), np.zeros(n_drop, bool)]
    cluster = np.r_[labels, np.full(n_drop, -1)]
    prob = np.r_[probs, np.zeros(n_drop, np.float32)]
    true_class = np.r_[truth, np.full(n_drop, -1)]

    # the most confident members of cluster 0: one gets an HTML id, one a corrupt file, one no file
    top0 = np.flatnonzero(cluster == 0)[np.argsort(-prob[cluster == 0], kind="stable")]
    ids[top0[0]] = TINY_EVIL_ID
    corrupt, missing = top0[1], top0[2]

    colours = [g[3] for g in _TINY_GROUPS] + [(170, 170, 170)]
    file_loc = []
    for i in range(n):
        p = img_dir / f"img_{i:04d}.png"
        if i == corrupt:
            p.write_bytes(b"this is not a png")
        elif i != missing:
            _tiny_image(p, colours[true_class[i]], rng)
        file_loc.append(str(p))

    umap2 = np.full((n, 2), np.nan, np.float32)
    umap2[:n_kept] = umap5[:, :2] + rng.normal(0, 0.05, size=(n_kept, 2))
    umap5_all = np.full((n, 5), np.nan, np.float32)
    umap5_all[:n_kept] = umap5

    clusters = pd.DataFrame({"id_str": ids, "cluster": cluster, "probability": prob, "kept": kept})
    for j in range(5):
        clusters[f"umap5_{j}"] = umap5_all[:, j]
    for j in range(2):
        clusters[f"umap2_{j}"] = umap2[:, j]
    clusters["file_loc"] = file_loc
    clusters["true_class"] = true_class

    feats = np.vstack([umap5_all[:n_kept], rng.normal(0, 3, size=(n_drop, 5))])
    feats = np.hstack([feats, rng.normal(0, 0.2, size=(n, 11))]).astype(np.float32)
    reps = pd.DataFrame({"id_str": ids, "file_loc": file_loc})
    reps = pd.concat([reps, pd.DataFrame(feats, columns=[f"feat_{j}" for j in range(16)]),
                      _tiny_fractions(rng, true_class)], axis=1)
    reps["true_class"] = true_class
    write_parquet(root / "reps.parquet", reps)

    params = {"min_samples": 5, "min_cluster_size": 20, "cluster_selection_method": "leaf",
              "n_neighbors": 50, "n_components": 5, "seed": 0, "smooth_max": 0.5}
    summary = {
        "input": str(root / "reps.parquet"), "n_rows": n,
        "counts": {"input": n, "after_smooth": n - 8, "after_edge_on": n - 15,
                   "after_artifact": n_kept, "kept": n_kept},
        "n_clusters": n_clusters, "fraction_clustered": float((labels >= 0).mean()),
        "versions": {"raregal": "test"},
    }
    write_run(Run(clusters=clusters, cluster_info=info, tree=tree, parameters=params,
                  timings={"seconds": {"umap": 1.0, "hdbscan": 0.5}}, summary=summary),
              root / "run", command="tests (tiny_run_dir)")
    (root / "run" / "tiny_fixture.json").write_text(json.dumps(
        {"evil_row": int(top0[0]), "corrupt_row": int(corrupt), "missing_row": int(missing)}))
    return root / "run"


@pytest.fixture(scope="session")
def tiny_report(tiny_run_dir) -> Path:
    """``index.html`` of the report of :func:`tiny_run_dir` (built once per test session)."""
    from raregal.views.report import build_report

    return build_report(tiny_run_dir, progress=False)


@contextmanager
def explorer_process(run_dir, max_points: int = 200, env: dict | None = None):
    """``raregal explore RUN_DIR`` in a subprocess on 127.0.0.1 (a free port); yields its URL."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "raregal", "explore", str(run_dir), "--port", "0", "--no-browser",
                             "--max-points", str(max_points)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    url, lines, t0 = None, [], time.time()
    while time.time() - t0 < 90:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
        if m:
            url = m.group(1)
            break
    if url is None:
        proc.kill()
        pytest.fail("explorer did not start:\n" + "".join(lines))
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def handlers_server(data):
    """The explorer's plain HTTP endpoints (no Bokeh page) for ``data`` on 127.0.0.1, in a thread; yields the URL."""
    import asyncio
    import queue
    import threading

    from tornado.httpserver import HTTPServer
    from tornado.ioloop import IOLoop
    from tornado.netutil import bind_sockets
    from tornado.web import Application

    from raregal.views.explore.handlers import patterns

    q = queue.Queue()

    def serve():
        asyncio.set_event_loop(asyncio.new_event_loop())
        sockets = bind_sockets(0, "127.0.0.1")
        HTTPServer(Application(patterns(data))).add_sockets(sockets)
        q.put((IOLoop.current(), f"http://127.0.0.1:{sockets[0].getsockname()[1]}/"))
        IOLoop.current().start()

    threading.Thread(target=serve, daemon=True).start()
    loop, url = q.get(timeout=30)
    try:
        yield url
    finally:
        loop.add_callback(loop.stop)


def stop_training_after_epoch(monkeypatch, epoch: int) -> None:
    """Make ``raregal train`` stop (KeyboardInterrupt) right after it saved epoch ``epoch``'s state."""
    import raregal.encoder.checkpoint as ckpt

    real_save = ckpt.save_train_state

    def killed(folder, state):
        real_save(folder, state)
        if state["epoch"] == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_train_state", killed)
