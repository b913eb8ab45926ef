"""Labelling in the explorer (no browser): buttons write RUN_DIR/labels.parquet at once, the "next to label"
strip of the guided search, two sessions at once, and the ranked candidates' CSV / FITS / SAMP exports.

The tests label a copy of the tiny run with sky positions (tests/skyrun.py), never the shared
``tiny_run_dir``; each starts without labels. Sessions are built with ``make_document`` on a plain
Bokeh ``Document`` and driven through their widgets' own Python callbacks (``ButtonClick``).
"""

from __future__ import annotations

import io
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_EVIL_ID, handlers_server
from samphub import running_hub
from skyrun import make_sky_run


@pytest.fixture(scope="module")
def label_run(tiny_run_dir, tmp_path_factory):
    return make_sky_run(tiny_run_dir, tmp_path_factory.mktemp("labels"))


@pytest.fixture(scope="module")
def label_data(label_run):
    from raregal.views.explore.data import ExplorerData
    from raregal.runs.with_images import load_run

    return ExplorerData(load_run(label_run), max_points=50)


@pytest.fixture
def data(label_data, label_run):
    """The explorer's data, with no label given yet."""
    (label_run / "labels.parquet").unlink(missing_ok=True)
    yield label_data
    (label_run / "labels.parquet").unlink(missing_ok=True)


def _session(data):
    from bokeh.document import Document

    from raregal.views.explore.app import make_document

    return make_document(Document(), data)


def _click(button):
    from bokeh.events import ButtonClick

    assert not button.disabled
    button._trigger_event(ButtonClick(button))


def _stored(run):
    return pd.read_parquet(run / "labels.parquet")


def test_member_on_a_galaxy_writes_labels_parquet(data, label_run):
    s = _session(data)
    row = int(data.members(1)[3])
    s.show_galaxy(row)
    _click(s.bar.galaxy[1])
    got = _stored(label_run)
    assert got[["class", "id_str", "label", "source"]].values.tolist() == [["class 1", data.ids[row], 1, "explore"]]
    assert 'data-members="1" data-nots="0"' in s.bar.counts.text
    assert 'data-label="1"' in s.bar.galaxy["state"].text
    assert s.src["labelled"].data["x"].tolist() == [data.x[row]] and s.src["labelled"].data["color"] == ["#16a34a"]
    _click(s.bar.galaxy[0])  # changed to "not": still one row
    got = _stored(label_run)
    assert len(got) == 1 and got.label.iloc[0] == 0 and 'data-nots="1"' in s.bar.counts.text
    _click(s.bar.galaxy[None])  # forget
    assert _stored(label_run).empty and s.src["labelled"].data["x"].tolist() == []


def test_cluster_buttons_label_every_member(data, label_run):
    s = _session(data)
    s.show_cluster(2)
    _click(s.bar.cluster[1])
    members = set(data.ids[data.members(2)])
    got = _stored(label_run)
    assert set(got.id_str) == members and len(got) == len(members) and (got.label == 1).all()
    assert f'data-members="{len(members)}" data-nots="0"' in s.bar.cluster["state"].text
    _click(s.bar.cluster[0])
    got = _stored(label_run)
    assert set(got.id_str) == members and (got.label == 0).all()


def test_named_classes_are_kept_apart_and_escaped(data, label_run):
    s = _session(data)
    row = int(data.members(0)[5])
    s.show_galaxy(row)
    _click(s.bar.galaxy[1])  # in "class 1"
    s.bar.new.value = "  bars <b>&</b> "
    assert s.bar.class_name == "bars <b>&</b>" and s.bar.select.value == "bars <b>&</b>" and s.bar.new.value == ""
    assert "bars &lt;b&gt;&amp;&lt;/b&gt;" in s.bar.counts.text and "bars <b>" not in s.bar.counts.text
    assert 'data-label="-1"' in s.bar.galaxy["state"].text  # not labelled in the new class
    _click(s.bar.galaxy[0])
    got = _stored(label_run).set_index("class")
    assert got.loc["class 1", "label"] == 1 and got.loc["bars <b>&</b>", "label"] == 0
    s.bar.new.value = "x" * 200  # too long: refused, the class stays
    assert s.bar.class_name == "bars <b>&</b>" and "at most 80" in s.bar.message.text
    s.bar.select.value = "class 1"
    assert 'data-label="1"' in s.bar.galaxy["state"].text
    # a new session starts on the first class labelled, and offers both
    assert _session(data).bar.class_name == "class 1"
    assert set(_session(data).bar.select.options) == {"class 1", "bars <b>&</b>"}


def test_strip_proposes_unlabelled_galaxies_the_same_for_the_same_labels(data, label_run):
    s = _session(data)
    assert len(data.guide._rows) == data.n_all  # candidates: every galaxy, the filtered ones too
    s.tabs.active = 3
    assert len(s.bar.strip_rows) == 0 and "at least one member" in s.bar.header.text
    truth = data.every["true_class"].to_numpy()
    examples = data.members(0)[:3]
    filtered = np.arange(data.n, data.n_all)[:2]  # galaxies the pre-filter dropped can be labelled too
    data.guide.set("class 1", examples, 1)
    data.guide.set("class 1", filtered, 0)
    s.bar.refresh_strip()
    first = s.bar.strip_rows.copy()
    assert len(first) == 10 and not set(first) & (set(examples) | set(filtered))
    assert (truth[first] == truth[examples[0]]).mean() >= 0.8  # the guided search follows the examples
    other = _session(data)
    other.tabs.active = 3
    assert other.bar.strip_rows.tolist() == first.tolist()  # same labels, same strip
    assert s.bar.slots[0]["tile"].text.count("/thumb/") == 2 and 'data-label="-1"' in s.bar.slots[0]["tile"].text
    for i in range(9):  # label all but one: the strip stays
        _click(s.bar.slots[i][1 if truth[first[i]] == truth[examples[0]] else 0])
    assert s.bar.strip_rows.tolist() == first.tolist() and s.bar.slots[0][1].button_type == "success"
    _click(s.bar.slots[9][0])  # the last one: a new strip at once
    labelled = set(data.guide.rows_of(_stored(label_run).id_str))
    assert len(labelled) == 15 and len(s.bar.strip_rows) == 10 and not set(s.bar.strip_rows) & labelled
    again = s.bar.strip_rows.tolist()
    _click(s.bar.next)  # next batch with the same labels: the same galaxies
    assert s.bar.strip_rows.tolist() == again


def test_two_sessions_labelling_at_once_lose_nothing(data, label_run):
    a, b = _session(data), _session(data)
    rows = np.arange(100)
    errors = []

    def label(session, mine, value):
        try:
            for r in mine:
                session.current["row"] = int(r)
                session.bar.label_galaxy(value)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=label, args=(a, rows[:50], 1)),
               threading.Thread(target=label, args=(b, rows[50:], 0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and a.bar.message.text == "" and b.bar.message.text == ""
    got = _stored(label_run).set_index("id_str")
    assert len(got) == 100 and set(got.index) == set(data.all_ids[rows])
    assert (got.loc[data.all_ids[rows[:50]], "label"] == 1).all()
    assert (got.loc[data.all_ids[rows[50:]], "label"] == 0).all()
    a.show_galaxy(int(rows[60]))  # what b wrote is seen by a
    assert 'data-label="0"' in a.bar.galaxy["state"].text and 'data-members="50" data-nots="50"' in a.bar.counts.text


def test_unreadable_labels_file_is_said_and_left_alone(data, label_run):
    path = label_run / "labels.parquet"
    path.write_bytes(b"not parquet")
    s = _session(data)
    assert "cannot be read as a labels table" in s.bar.message.text
    s.show_galaxy(3)
    s.bar.label_galaxy(1)
    assert "Not saved" in s.bar.message.text and path.read_bytes() == b"not parquet"


def test_strip_tile_and_header_escape_catalog_and_class_strings(data):
    from raregal.views.explore import panels

    evil = int(np.flatnonzero(data.all_ids == TINY_EVIL_ID)[0])
    text = panels.strip_tile(data, evil, 0.5, 1) + panels.galaxy_label(TINY_EVIL_ID, "<i>c</i>", 1)
    text += panels.guided_header("<i>c</i>/x", 3, "<b>m</b>", True)
    assert TINY_EVIL_ID not in text and "<i>c</i>" not in text and "<b>m</b>" not in text
    assert "&lt;script&gt;" in text and 'href="/guided/%3Ci%3Ec%3C%2Fi%3E%2Fx.csv"' in text


# ---- exports: /guided/<class>.csv and .fits, and SAMP ------------------------------------------------
@pytest.fixture(scope="module")
def endpoints(label_data):
    """The explorer's HTTP endpoints (no Bokeh page) on 127.0.0.1, in a thread: (data, url)."""
    with handlers_server(label_data) as url:
        yield label_data, url


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.headers, r.read()


ODD = "odd/class ü & <x>.csv"


def test_exports_rank_members_and_candidates_with_sky_positions(endpoints, data, label_run, tmp_path):
    from astropy.table import Table

    from raregal.views.explore.labelling import write_candidates

    _, url = endpoints
    members = data.members(1)[:4]
    data.guide.set(ODD, members, 1)
    data.guide.set(ODD, data.members(0)[:2], 0)
    base = url + "guided/" + urllib.parse.quote(ODD, safe="")
    headers, body = _get(base + ".csv")
    assert headers["Content-Type"].startswith("text/csv")
    assert headers["Content-Disposition"] == 'attachment; filename="guided_odd_class______x_.csv.csv"'
    csv = pd.read_csv(io.BytesIO(body), dtype={"id_str": str})
    assert {"id_str", "rank", "status", "score", "ra", "dec", "cluster", "kept"} <= set(csv.columns)
    assert len(csv) == 4 + 200 and set(csv.id_str[csv.status == "member"]) == set(data.all_ids[members])
    assert not set(csv.id_str) & set(data.all_ids[data.members(0)[:2]])  # non-members are no candidates
    assert np.all(np.diff(csv.score) <= 0) and csv["rank"].tolist() == list(range(1, 205))
    clusters = pd.read_parquet(label_run / "clusters.parquet").set_index("id_str")
    np.testing.assert_allclose(csv.ra, clusters.loc[csv.id_str, "ra"])
    np.testing.assert_allclose(csv.dec, clusters.loc[csv.id_str, "dec"])
    headers, body = _get(base + ".fits?top=5")
    fits = Table.read(io.BytesIO(body), format="fits")
    assert headers["Content-Type"] == "application/fits" and len(fits) == 9
    assert [str(i) for i in fits["id_str"]] == csv.id_str[:9].tolist() and str(fits["ra"].unit) == "deg"
    np.testing.assert_allclose(fits["score"], csv.score[:9], rtol=1e-6)
    out = write_candidates(csv, tmp_path / "c.fits", ODD)  # the same table, written atomically
    assert len(Table.read(out)) == len(csv) and [p.name for p in tmp_path.iterdir()] == ["c.fits"]


def test_bad_class_names_and_parameters_get_4xx(endpoints, data, caplog):
    _, url = endpoints
    data.guide.set("only not", data.members(0)[:2], 0)
    data.guide.set("good", data.members(1)[:2], 1)
    caplog.set_level(logging.WARNING)
    bad = {"guided/no%20such%20class.csv": 404, "guided/%00.csv": 404, "guided/%0A.fits": 404,
           "guided/" + "x" * 81 + ".csv": 404, "guided/" + "x" * 2000 + ".csv": 404, "guided/%FF%FE.csv": 400,
           "guided/only%20not.csv": 409, "guided/good.csv?top=abc": 400, "guided/good.csv?top=0": 400,
           "guided/good.fits?top=9999999": 400, "guided/good.xlsx": 404, "guided/.csv": 404}
    got = {}
    for path, status in bad.items():
        try:
            _get(url + path)
            got[path] = 200
        except urllib.error.HTTPError as err:
            got[path] = err.code
    assert got == bad
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert _get(url + "guided/good.csv?top=3")[1].count(b"\n") == 1 + 2 + 3


def test_candidates_go_over_samp_with_scores_and_positions(endpoints, data, tmp_path):
    from astropy.table import Table

    from raregal.views import samp
    from raregal.views.explore.sampbar import send_rows

    _, url = endpoints
    s = _session(data)
    s.show_cluster(3)
    _click(s.bar.cluster[1])
    rows, frame = s.bar.candidates()
    assert len(frame) == len(data.members(3)) + 200 and (rows >= 0).all()
    assert (data.all_ids[rows] == frame.id_str.to_numpy()).all()
    with running_hub(tmp_path / "hub") as receiver:
        text = send_rows(data, rows, "tiny class 1 candidates", url, frame=frame)
        assert text.startswith("Sent tiny class 1 candidates (") and text.endswith("to test receiver.")
        params = receiver.wait(samp.TABLE)
        with urllib.request.urlopen(params["url"], timeout=20) as r:
            table = Table.read(io.BytesIO(r.read()), format="votable")
    assert [str(i) for i in table["id_str"]] == frame.id_str.tolist()
    np.testing.assert_allclose(table["score"], frame.score, rtol=1e-6)
    np.testing.assert_allclose(table["ra"], frame.ra)
    assert str(table["dec"].unit) == "deg"
