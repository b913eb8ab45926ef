"""The explorer's server side: point queries, 'more like this', panels, HTTP endpoints."""

from __future__ import annotations

import asyncio
import queue
import threading
import urllib.request

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_EVIL_ID


@pytest.fixture(scope="module")
def tiny_explorer(tiny_run_dir):
    from raregal.views.explore.data import ExplorerData
    from raregal.runs.with_images import load_run

    return ExplorerData(load_run(tiny_run_dir), max_points=50)


def test_view_sends_few_points_clustered_first_and_stable(tiny_explorer):
    d = tiny_explorer
    (x0, x1), (y0, y1) = d.x_range, d.y_range
    rows, total = d.in_view(x0, x1, y0, y1)
    assert total == d.n and len(rows) == 50
    assert (d.labels[rows] >= 0).all()  # clustered galaxies first
    again, _ = d.in_view(x0, x1 + 1e-9, y0, y1)
    assert set(rows) == set(again)  # same view, same markers
    # zoomed in on a few galaxies: all of them are sent
    cx, cy = d.x[0], d.y[0]
    rows, total = d.in_view(cx - 0.3, cx + 0.3, cy - 0.3, cy + 0.3)
    assert len(rows) == total and 0 in rows and total < 50


def test_click_lasso_and_members(tiny_explorer):
    d = tiny_explorer
    assert d.nearest(d.x[7] + 1e-3, d.y[7], 0.05, 0.05) == 7
    assert d.nearest(d.x_range[0] - 5, d.y[7], 0.05, 0.05) is None
    k = 1
    members = d.members(k)
    assert (d.labels[members] == k).all() and np.all(np.diff(d.prob[members]) <= 0)
    xs, ys = d.x[members], d.y[members]
    box = d.in_polygon([xs.min() - 1e-6, xs.max() + 1e-6, xs.max() + 1e-6, xs.min() - 1e-6],
                       [ys.min() - 1e-6, ys.min() - 1e-6, ys.max() + 1e-6, ys.max() + 1e-6])
    assert set(members) <= set(box)
    inside = (d.x >= xs.min()) & (d.x <= xs.max()) & (d.y >= ys.min()) & (d.y <= ys.max())
    assert set(box) == set(np.flatnonzero(inside))


def test_more_like_this_finds_the_same_kind(tiny_explorer):
    d = tiny_explorer
    row = int(d.members(0)[0])
    rows, dist = d.similar(row, 12)
    assert len(rows) == 12 and row not in rows and np.all(np.diff(dist) >= 0)
    truth = d.table["true_class"].to_numpy()
    assert (truth[rows] == truth[row]).mean() >= 0.9


def test_panels_escape_catalog_strings(tiny_explorer):
    from raregal.views.explore import panels

    d = tiny_explorer
    evil = int(np.flatnonzero(d.ids == TINY_EVIL_ID)[0])
    for text in (panels.galaxy_panel(d, evil), panels.cluster_panel(d, int(d.labels[evil])),
                 panels.selection_panel(d, np.array([evil]), "ab12")):
        assert TINY_EVIL_ID not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    gal = panels.galaxy_panel(d, evil)
    assert gal.count('<img loading="lazy" src="/thumb/') == 12  # more like this
    clu = panels.cluster_panel(d, 0)
    assert clu.count("<img") == min(36, int((d.labels == 0).sum()))


@pytest.fixture(scope="module")
def tiny_server(tiny_run_dir):
    """The explorer served on 127.0.0.1 (free port) in a thread with its own event loop."""
    from raregal.views.explore import make_server

    q = queue.Queue()

    def serve():
        asyncio.set_event_loop(asyncio.new_event_loop())
        server, url = make_server(tiny_run_dir, port=0, max_points=50)
        server.start()
        q.put((server, url))
        server.io_loop.start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    server, url = q.get(timeout=60)
    yield server, url
    server.io_loop.add_callback(server.io_loop.stop)
    thread.join(10)


def _get(url):
    with urllib.request.urlopen(url, timeout=20) as r:
        return r.status, r.headers.get("Content-Type"), r.read()


def test_server_endpoints(tiny_server, tiny_run_dir):
    from PIL import Image
    import io

    server, url = tiny_server
    assert url.startswith("http://127.0.0.1:")
    status, ctype, body = _get(url)
    page = body.decode()
    assert status == 200 and "static/js/bokeh" in page and "cdn.bokeh.org" not in page
    status, ctype, body = _get(url + "thumb/3?s=64")
    assert ctype == "image/jpeg" and Image.open(io.BytesIO(body)).size == (64, 64)
    status, ctype, body = _get(url + "cluster/2.csv")
    csv = pd.read_csv(io.BytesIO(body), dtype={"id_str": str})
    clusters = pd.read_parquet(tiny_run_dir / "clusters.parquet")
    assert set(csv.id_str) == set(clusters.id_str[clusters.cluster == 2])
    with pytest.raises(urllib.error.HTTPError):
        _get(url + "export/0123456789abcdef.csv")
    with pytest.raises(urllib.error.HTTPError):
        _get(url + "thumb/999999")
