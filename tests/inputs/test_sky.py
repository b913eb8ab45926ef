"""Sky coordinates: checked on the way in, carried into clusters.parquet, exports, galleries and the explorer."""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from raregal.inputs import sky
from raregal.errors import InputError
from skyrun import make_sky_run


@pytest.fixture(scope="module")
def sky_run(tiny_run_dir, tmp_path_factory):
    return make_sky_run(tiny_run_dir, tmp_path_factory.mktemp("sky"))


@pytest.fixture(scope="module")
def sky_report(sky_run):
    from raregal.views.report import build_report

    return build_report(sky_run, progress=False, sky_layer="ls-dr9")


def _frame(ra, dec, **cols):
    return pd.DataFrame({"id_str": [f"g{i}" for i in range(len(ra))], **cols, "RA": ra, "Dec": dec})


def test_coordinates_are_checked_and_bad_rows_named(caplog):
    good = sky.with_coordinates(_frame([10.0, 359.9, np.nan], [-90.0, 90.0, 1.0], x=[1, 2, 3]), "cat.csv")
    assert list(good.columns) == ["id_str", "x", "ra", "dec"]  # RA/Dec renamed in place
    np.testing.assert_array_equal(good["ra"], [10.0, 359.9, np.nan])
    with caplog.at_level(logging.WARNING, logger="raregal"):
        out = sky.with_coordinates(_frame([10.0, 360.0, -5.0, 20.0, np.inf], [1.0, 2.0, 3.0, 91.0, 4.0]), "cat.csv")
    assert np.isfinite(out["ra"]).tolist() == [True, False, False, False, False]
    assert out["dec"].isna().tolist() == [False, True, True, True, True]  # both coordinates of a bad row go
    (msg,) = [r.getMessage() for r in caplog.records]
    assert msg.startswith("cat.csv: 4 row(s) with RA outside [0, 360) or Dec outside [-90, 90]")
    assert "g1, g2, g3, g4" in msg and "NaN" in msg
    with pytest.raises(InputError, match=r"cat.csv: every position is impossible: 2 row.*g0, g1.*ra % 360"):
        sky.with_coordinates(_frame([-10.0, 400.0, np.nan], [0.0, 0.0, np.nan]), "cat.csv")
    with pytest.raises(InputError, match="column 'RA' is not numeric"):
        sky.with_coordinates(_frame(["10:00:00", "11:00:00"], [1.0, 2.0]), "cat.csv")


def test_one_coordinate_alone_or_none_is_not_a_position(caplog):
    plain = pd.DataFrame({"id_str": ["a"], "ra_err": [0.1]})
    assert sky.with_coordinates(plain) is plain and not sky.has_coordinates(plain)
    with caplog.at_level(logging.WARNING, logger="raregal"):
        out = sky.with_coordinates(pd.DataFrame({"id_str": ["a"], "ra": [1.0]}), "t.parquet")
    assert "dec" not in out.columns and "has a 'ra' column but no 'dec'" in caplog.text


def test_viewer_link_and_formats():
    url = sky.viewer_url(150.1191666, 2.2058333)
    assert url == "https://www.legacysurvey.org/viewer?ra=150.11917&dec=2.20583&layer=ls-dr10&zoom=16"
    assert sky.viewer_url(np.nan, 2.0) is None and sky.viewer_url(None, None) is None
    assert "layer=ls-dr9" in sky.viewer_url(1, -1, "ls-dr9")
    assert sky.format_deg(150.1191666, 2.2058333) == "150.11917, +2.20583"
    assert sky.format_deg(5.0, -0.5) == "5.00000, -0.50000"
    assert sky.format_hms_dms(150.1191666, 2.2058333) == "10h00m28.60s +02d12m21.0s"
    assert sky.check_layer("ls-dr10") == "ls-dr10"
    with pytest.raises(InputError, match="sky_layer"):
        sky.check_layer("ls-dr10&zoom=1")


def test_cluster_table_carries_the_checked_coordinates():
    from raregal.discovery.pipeline import galaxy_table

    frame = sky.with_coordinates(_frame([10.0, 20.0, 30.0], [1.0, 2.0, 3.0], file_loc=["a", "b", "c"]))
    est = SimpleNamespace(labels_=np.array([0, -1]), probabilities_=np.array([0.9, 0.0]),
                          embedding_=np.zeros((2, 5)), embedding_2d_=np.zeros((2, 2)))
    table = galaxy_table(frame, np.array([True, False, True]), est)
    assert table["ra"].tolist() == [10.0, 20.0, 30.0] and table["dec"].tolist() == [1.0, 2.0, 3.0]
    assert table["cluster"].tolist() == [0, -1, -1]  # every input row, kept or not, keeps its position


def test_search_refuses_impossible_coordinates_before_any_work(tmp_path, capsys):
    from raregal.cli import main
    from raregal.evaluation.planted import make_planted

    frame = make_planted(n=200, dim=8, group_fractions=(0.05,), seed=1)
    frame["ra"], frame["dec"] = np.linspace(-3, -1, 200), 0.0  # all negative: a -180..180 convention
    frame.to_parquet(tmp_path / "reps.parquet")
    assert main(["search", str(tmp_path / "reps.parquet"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "every position is impossible" in err and "ra % 360" in err and not (tmp_path / "run").exists()


def test_report_links_each_tile_to_the_sky_viewer(sky_run, sky_report):
    html = sky_report.read_text()
    clusters = pd.read_parquet(sky_run / "clusters.parquet")
    top = clusters[clusters.cluster == 2].sort_values("probability", ascending=False, kind="stable").iloc[0]
    section = html[html.index('id="cluster-2"'):html.index('id="cluster-3"')]
    link = (f'<a href="https://www.legacysurvey.org/viewer?ra={top.ra:.5f}&amp;dec={top.dec:.5f}&amp;layer=ls-dr9'
            f'&amp;zoom=16" target="_blank" rel="noopener"')
    assert link in section and f">{top.ra:.5f}, {top.dec:+.5f}</a>" in section
    n_tiles = section.count('<div class="tile')
    assert section.count('rel="noopener"') == n_tiles  # one link per galaxy
    external = set(re.findall(r'(?:href|src)="(https?://[^"/]*)', html))
    assert external == {"https://www.legacysurvey.org"}  # the only thing that is not inside the folder


def test_member_exports_carry_coordinates_with_units(sky_run, sky_report):
    from astropy.table import Table

    clusters = pd.read_parquet(sky_run / "clusters.parquet").set_index("id_str")
    downloads = sky_report.parent / "downloads"
    csv = pd.read_csv(downloads / "cluster_1.csv", dtype={"id_str": str})
    np.testing.assert_allclose(csv[["ra", "dec"]], clusters.loc[csv.id_str, ["ra", "dec"]])
    fits = Table.read(downloads / "cluster_1.fits")
    assert str(fits["ra"].unit) == "deg" and str(fits["dec"].unit) == "deg"
    np.testing.assert_allclose(fits["dec"], csv["dec"])


def test_report_catalog_adds_coordinates_the_run_lacks(tiny_run_dir, sky_run, tmp_path):
    from raregal.views.report import build_report
    from raregal.runs.with_images import load_run

    cat = pd.read_parquet(sky_run / "clusters.parquet")[["id_str", "ra", "dec"]].rename(columns={"ra": "RA"})
    cat.loc[0, "RA"] = 999.0  # bad: listed, left without position
    cat.to_csv(tmp_path / "coords.csv", index=False)
    run = load_run(tiny_run_dir, tmp_path / "coords.csv")  # no file_loc in this catalog: the run's stay
    assert run.clusters["file_loc"].notna().all() and np.isnan(run.clusters["ra"].iloc[0])
    np.testing.assert_allclose(run.clusters["dec"].iloc[1:], cat["dec"].iloc[1:])
    index = build_report(tiny_run_dir, catalog=tmp_path / "coords.csv", out=tmp_path / "rep", progress=False)
    assert "legacysurvey.org/viewer?ra=" in index.read_text()
    pd.DataFrame({"id_str": cat["id_str"], "mag": 1.0}).to_csv(tmp_path / "nothing.csv", index=False)
    with pytest.raises(InputError, match="neither 'file_loc'"):
        load_run(tiny_run_dir, tmp_path / "nothing.csv")


def test_explorer_galaxy_panel_shows_position_and_link(sky_run):
    from raregal.views.explore import panels
    from raregal.views.explore.data import ExplorerData
    from raregal.runs.with_images import load_run

    data = ExplorerData(load_run(sky_run), neighbours=False, sky_layer="ls-dr9")
    row = int(data.members(0)[3])
    html = panels.galaxy_panel(data, row)
    assert f"{data.ra[row]:.5f}, {data.dec[row]:+.5f}" in html
    assert sky.format_hms_dms(data.ra[row], data.dec[row]) in html
    assert (f'href="https://www.legacysurvey.org/viewer?ra={data.ra[row]:.5f}&amp;dec={data.dec[row]:.5f}'
            '&amp;layer=ls-dr9&amp;zoom=16" target="_blank" rel="noopener"') in html
    data.ra = data.ra.copy()
    data.ra[row] = np.nan
    assert "unknown" in panels.galaxy_panel(data, row) and "legacysurvey" not in panels.galaxy_panel(data, row)


def test_similar_carries_coordinates(sky_run):
    from raregal.similarity import similar

    out = similar(sky_run, cluster=1, k=8, progress=False)
    clusters = pd.read_parquet(sky_run / "clusters.parquet").set_index("id_str")
    np.testing.assert_allclose(out[["ra", "dec"]], clusters.loc[out.id_str, ["ra", "dec"]])
