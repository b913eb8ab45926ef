"""The explorer in headless Chromium with sky coordinates and a SAMP hub: dense-spot tooltips, the cluster
table's words, the galaxy's position and viewer link, and the SAMP buttons (a test hub in this process).

Skipped like tests/test_browser.py when Chromium or Playwright is missing. Screenshots go to tmp_path.
"""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest

from conftest import explorer_process
from samphub import running_hub
from skyrun import STACKED, make_sky_run
from test_browser import _MAP_JS, _to_page, browser, page  # noqa: F401 - fixtures shared with the other browser tests

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("hub")) as receiver:
        yield receiver


@pytest.fixture(scope="module")
def sky_explorer(tiny_run_dir, tmp_path_factory, browser, hub):  # noqa: F811
    """``raregal explore`` of the sky run (12 galaxies on one spot) in a subprocess that finds the test hub."""
    import matplotlib

    run = make_sky_run(tiny_run_dir, tmp_path_factory.mktemp("sky_explore"), stack=True)
    # the hub's environment (its HOME is a test folder), with matplotlib's cache where it was
    with explorer_process(run, 1000, env={"MPLCONFIGDIR": matplotlib.get_configdir()}) as url:
        yield url, run


def _open(page, url):  # noqa: F811
    page.goto(url)
    page.wait_for_function(f"() => {{ const v = ({_MAP_JS})(); return v && v.model.renderers.find("
                           "r => r.name === 'points').data_source.data.x.length > 0 }", timeout=30000)
    page.wait_for_timeout(300)


def test_dense_spot_tooltip_shows_the_nearest_few(page, sky_explorer, tmp_path):  # noqa: F811
    url, run = sky_explorer
    _open(page, url)
    clusters = pd.read_parquet(run / "clusters.parquet")
    stacked = clusters[clusters.cluster == 1].sort_values("probability", ascending=False).head(STACKED)
    px, py = _to_page(page, stacked.umap2_0.median(), stacked.umap2_1.median())
    page.mouse.move(px + 2, py + 2)
    page.mouse.move(px, py)
    more = page.locator(".bk-Tooltip .rg-more", has_text=re.compile(r"more galaxies here"))
    more.wait_for(state="visible", timeout=10000)
    n_more = int(re.search(r"\+(\d+) more", more.inner_text()).group(1))
    images = page.locator(".bk-Tooltip img")
    assert images.count() == 4 and n_more >= STACKED - 4  # 4 blocks, the others counted
    shown = [images.nth(i).evaluate("i => i.closest('div').innerText.split('\\n')[0]") for i in range(4)]
    assert set(shown) <= set(stacked.id_str)  # the nearest: on the spot itself
    box = page.locator(".bk-Tooltip").first.bounding_box()
    assert box["height"] < 950 * 0.75, box  # no column taller than the page
    page.wait_for_function("() => [...document.querySelectorAll('*')].filter(e => e.shadowRoot)"
                           ".flatMap(e => [...e.shadowRoot.querySelectorAll('.bk-Tooltip img')])"
                           ".every(i => i.complete && i.naturalWidth > 0)", timeout=10000)
    page.screenshot(path=str(tmp_path / "explorer_dense_hover.png"))
    assert page.errors == []
    print(f"screenshot: {tmp_path}/explorer_dense_hover.png")


def test_cluster_table_words_are_not_cut_off(page, sky_explorer, tmp_path):  # noqa: F811
    url, _ = sky_explorer
    _open(page, url)
    cells = page.locator(".slick-cell.l5 > div")
    cells.first.wait_for(timeout=10000)
    assert cells.count() >= 3
    for i in range(cells.count()):
        text, fits = cells.nth(i).evaluate(
            "d => [d.innerText, d.scrollHeight <= d.clientHeight + 1 && d.scrollWidth <= d.clientWidth + 1]")
        assert fits and re.search(r"\d\.\d\d vs \d\.\d\d", text), text
        assert cells.nth(i).get_attribute("title") == text.replace("\n", " ")
    viewport = page.locator(".slick-viewport").first.bounding_box()
    last = cells.nth(cells.count() - 1).bounding_box()
    assert last["y"] + last["height"] <= viewport["y"] + viewport["height"] + 1  # 4 clusters: no scrolling needed
    page.locator(".bk-DataTable, [name=cluster_table]").first.screenshot(path=str(tmp_path / "explorer_table.png"))
    print(f"screenshot: {tmp_path}/explorer_table.png")


def test_galaxy_position_and_samp_buttons(page, sky_explorer, hub, tmp_path):  # noqa: F811
    from raregal.views import samp

    url, run = sky_explorer
    _open(page, url)
    clusters = pd.read_parquet(run / "clusters.parquet")
    kept = clusters[clusters.kept].reset_index(drop=True)
    lone = kept[kept.cluster == 2].sort_values("probability", ascending=False).iloc[0]
    page.mouse.click(*_to_page(page, lone.umap2_0, lone.umap2_1))
    link = page.locator("#galaxy-sky")
    link.wait_for(timeout=10000)
    assert link.get_attribute("target") == "_blank" and link.get_attribute("rel") == "noopener"
    assert link.get_attribute("href").startswith(f"https://www.legacysurvey.org/viewer?ra={lone.ra:.5f}&dec=")
    assert page.locator("#galaxy-radec").inner_text() == f"{lone.ra:.5f}, {lone.dec:+.5f}"
    page.screenshot(path=str(tmp_path / "explorer_galaxy_sky.png"))

    page.get_by_role("button", name="Send cluster to SAMP").click()
    page.get_by_text(re.compile(r"Sent .* cluster 2 \(\d+ galaxies\) to test receiver")).wait_for(timeout=20000)
    params = hub.wait(samp.TABLE)
    assert params["url"].startswith(url + "votable/") and params["name"].endswith("cluster 2")
    from astropy.table import Table

    table = Table.read(io.BytesIO(page.request.get(params["url"]).body()), format="votable")
    members = kept[kept.cluster == 2].sort_values("probability", ascending=False, kind="stable")
    assert list(table["id_str"]) == members.id_str.tolist() and str(table["ra"].unit) == "deg"

    page.get_by_role("button", name="Point sky viewers here").click()
    page.get_by_text(re.compile(r"test receiver pointed at")).wait_for(timeout=20000)
    assert float(hub.wait(samp.POINT)["ra"]) == pytest.approx(lone.ra, abs=1e-5)
    page.screenshot(path=str(tmp_path / "explorer_samp.png"))
    assert page.external == [] and page.errors == []  # the viewer link is only followed when clicked
    print(f"screenshots: {tmp_path}/explorer_galaxy_sky.png, explorer_samp.png")
