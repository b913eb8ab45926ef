"""SAMP: `raregal similar --samp` and the explorer send tables (and positions) to an application on a hub.

Each test starts astropy's own hub in-process with its lock file in tmp_path (tests/samphub.py),
so the user's ~/.samp is never read or written, and a receiving client that records the messages.
"""

from __future__ import annotations

import io
import logging
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pandas as pd
import pytest

from conftest import handlers_server

from raregal.views import samp
from raregal.cli import main
from samphub import hub_env, running_hub
from skyrun import make_sky_run


@pytest.fixture(scope="module")
def sky_run(tiny_run_dir, tmp_path_factory):
    return make_sky_run(tiny_run_dir, tmp_path_factory.mktemp("samp_sky"))


@pytest.fixture
def no_hub(tmp_path, monkeypatch):
    """The environment of a machine where no hub runs (and the user's home is out of reach)."""
    for k, v in hub_env(tmp_path).items():
        monkeypatch.setenv(k, v)


def _votable(url: str):
    from astropy.table import Table

    if url.startswith("file:"):
        return Table.read(urllib.parse.unquote(urllib.parse.urlparse(url).path), format="votable")
    with urllib.request.urlopen(url, timeout=20) as r:
        assert r.headers.get("Content-Type") == "application/x-votable+xml"
        return Table.read(io.BytesIO(r.read()), format="votable")


def test_no_hub_or_no_taker_is_one_clear_line(no_hub, tmp_path):
    with pytest.raises(samp.SampUnavailable, match=r"^no SAMP hub is running; start TOPCAT or Aladin"):
        samp.send_table("file:///nowhere.vot", "x")
    with running_hub(tmp_path / "hub", receiver=False):
        with pytest.raises(samp.SampUnavailable, match="no application on it accepts tables"):
            samp.send_table("file:///nowhere.vot", "x")
        with pytest.raises(samp.SampUnavailable, match="accepts sky positions"):
            samp.point_at(150.0, 2.0)


def test_similar_samp_sends_the_result_as_votable(sky_run, tmp_path, capsys):
    out = tmp_path / "more.csv"
    with running_hub(tmp_path / "hub") as receiver:
        assert main(["similar", str(sky_run), "--cluster", "1", "-k", "10", "--out", str(out), "--samp",
                     "--no-gallery"]) == 0
        params = receiver.wait(samp.TABLE)
    csv = pd.read_csv(out, dtype={"id_str": str})
    assert params["name"] == "raregal similar more" and params["url"] == out.with_suffix(".vot").resolve().as_uri()
    table = _votable(params["url"])
    assert list(table["id_str"]) == csv["id_str"].tolist() and len(csv) == 10
    np.testing.assert_allclose(table["ra"], csv["ra"])
    np.testing.assert_allclose(table["dec"], csv["dec"])
    assert str(table["ra"].unit) == "deg" and table["ra"].meta["ucd"] == "pos.eq.ra;meta.main"
    assert str(table["dec"].unit) == "deg" and table["dec"].meta["ucd"] == "pos.eq.dec;meta.main"
    clusters = pd.read_parquet(sky_run / "clusters.parquet").set_index("id_str")
    np.testing.assert_allclose(csv["ra"], clusters.loc[csv["id_str"], "ra"])  # the run's positions, not others
    assert "samp: sent" in capsys.readouterr().out


def test_similar_samp_without_hub_warns_and_keeps_the_table(sky_run, tmp_path, no_hub, caplog):
    out = tmp_path / "more.csv"
    with caplog.at_level(logging.WARNING, logger="raregal"):
        assert main(["similar", str(sky_run), "--cluster", "1", "-k", "5", "--out", str(out), "--samp",
                     "--no-gallery"]) == 0
    assert len(pd.read_csv(out)) == 5 and out.with_suffix(".vot").is_file()
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no SAMP hub is running" in w and "more.vot" in w for w in warning), warning
    # a .vot raregal did not write beside a new table is never replaced
    (tmp_path / "mine.vot").write_text("my own table")
    assert main(["similar", str(sky_run), "--cluster", "1", "-k", "5", "--out", str(tmp_path / "mine.csv"),
                 "--samp", "--no-gallery"]) == 2
    assert (tmp_path / "mine.vot").read_text() == "my own table"


@pytest.fixture(scope="module")
def endpoints(sky_run):
    """The explorer's data and its HTTP endpoints (no Bokeh page) on 127.0.0.1, in a thread."""
    from raregal.views.explore.data import ExplorerData
    from raregal.runs.with_images import load_run

    data = ExplorerData(load_run(sky_run), neighbours=False)
    with handlers_server(data) as url:
        yield data, url


def test_explorer_sends_a_cluster_and_points_viewers(endpoints, tmp_path, no_hub):
    from raregal.views.explore.sampbar import point_at_row, send_rows

    data, url = endpoints
    members = data.members(2)
    assert send_rows(data, members, "tiny cluster 2", url).startswith("Not sent: no SAMP hub is running")
    with running_hub(tmp_path / "hub") as receiver:
        text = send_rows(data, members, "tiny cluster 2", url)
        assert text == f"Sent tiny cluster 2 ({len(members)} galaxies) to test receiver."
        params = receiver.wait(samp.TABLE)
        assert params["url"].startswith(url + "votable/") and params["name"] == "tiny cluster 2"
        table = _votable(params["url"])  # fetched from the explorer, as TOPCAT does
        assert list(table["id_str"]) == list(data.ids[members])
        np.testing.assert_allclose(table["ra"], data.ra[members])
        assert str(table["dec"].unit) == "deg"
        row = int(members[0])
        assert point_at_row(data, row).startswith("test receiver pointed at")
        point = receiver.wait(samp.POINT)
        assert float(point["ra"]) == pytest.approx(data.ra[row], abs=1e-6)
        assert float(point["dec"]) == pytest.approx(data.dec[row], abs=1e-6)
    assert send_rows(data, np.zeros(0, np.int64), "empty", url).startswith("Nothing to send")
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(url + "votable/0123456789abcdef.vot", timeout=20)
