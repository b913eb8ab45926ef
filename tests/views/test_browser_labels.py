"""End-to-end labelling in headless Chromium: a label given on the page is in labels.parquet and still
shown after a reload; two pages labelling at once both end up in the file; the Guided tab's strip.

Uses test_browser.py's ``browser`` and ``page`` fixtures (skipped, with the reason, where Chromium
is missing) and its own ``raregal explore`` subprocess on a copy of the tiny run with sky positions
(tests/skyrun.py), so the shared ``tiny_run_dir`` never gets labels. Screenshots go to tmp_path.
"""

from __future__ import annotations

import time

import pandas as pd
import pytest

from conftest import explorer_process
from skyrun import make_sky_run
from test_browser import _MAP_JS, _to_page, browser, page  # noqa: F401 - fixtures used by name

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def label_server(tiny_run_dir, tmp_path_factory, browser):  # noqa: F811 - the imported fixture
    """(URL, run folder) of ``raregal explore`` in a subprocess on 127.0.0.1 (free port), on a copy of the run."""
    run = make_sky_run(tiny_run_dir, tmp_path_factory.mktemp("browser_labels"))
    with explorer_process(run, 200) as url:
        yield url, run


def _open(pg, url):
    pg.goto(url)
    pg.wait_for_function(f"() => {{ const v = ({_MAP_JS})(); return v && v.model.renderers.find("
                         "r => r.name === 'points').data_source.data.x.length > 0 }", timeout=30000)
    pg.wait_for_timeout(300)


def _labels(run, class_name, want: int, timeout: float = 15.0) -> pd.DataFrame:
    """The labels of ``class_name`` in labels.parquet once it holds ``want`` of them (or after ``timeout`` s)."""
    t0, got = time.time(), pd.DataFrame()
    while time.time() - t0 < timeout:
        if (run / "labels.parquet").exists():
            got = pd.read_parquet(run / "labels.parquet")
            got = got[got["class"] == class_name]
            if len(got) >= want:
                break
        time.sleep(0.1)
    return got


def _images_loaded(images, n: int, timeout: float = 15.0) -> None:
    """Wait until the ``n`` images of the locator ``images`` (inside Bokeh's shadow roots) are loaded."""
    t0, done = time.time(), -1
    while time.time() - t0 < timeout:
        done = images.evaluate_all("els => els.filter(i => i.complete && i.naturalWidth > 0).length")
        if done == n and images.count() == n:
            return
        time.sleep(0.1)
    pytest.fail(f"{done} of {images.count()} images loaded, {n} expected")


def _pick(pg, run, cluster: int):
    """Click the most confident galaxy of ``cluster`` on the map; returns the id the Galaxy tab shows."""
    clusters = pd.read_parquet(run / "clusters.parquet")
    m = clusters[clusters.cluster == cluster].sort_values("probability", ascending=False).iloc[0]
    pg.mouse.click(*_to_page(pg, m.umap2_0, m.umap2_1))
    pg.locator("#galaxy-panel").wait_for(timeout=10000)
    pg.locator("#galaxy-label").wait_for(timeout=10000)
    return pg.locator("#galaxy-panel table td").nth(1).inner_text()


def test_member_click_is_saved_and_shown_after_reload(page, label_server, tmp_path):  # noqa: F811
    url, run = label_server
    _open(page, url)
    assert page.locator("#label-counts[data-members='0']").count() == 1
    picked = _pick(page, run, 1)
    assert page.locator("#galaxy-label[data-label='-1']").count() == 1
    page.locator(".rg-galaxy-member button").click()
    page.locator("#galaxy-label[data-label='1']").wait_for(timeout=10000)
    got = _labels(run, "class 1", 1)
    assert got[["id_str", "label", "source"]].values.tolist() == [[picked, 1, "explore"]]

    page.reload()
    _open(page, url)
    page.locator("#label-counts[data-members='1']").wait_for(timeout=10000)  # read back from the file
    assert _pick(page, run, 1) == picked
    page.locator("#galaxy-label[data-label='1']").wait_for(timeout=10000)
    assert "member" in page.locator("#galaxy-label").inner_text()
    page.screenshot(path=str(tmp_path / "labels_galaxy.png"))

    # the Guided tab: ten proposals with thumbnails; labelling one writes it at once
    page.get_by_text("Guided", exact=True).click()
    page.locator("#guided-header[data-shown='10']").wait_for(timeout=30000)
    _images_loaded(page.locator(".strip img"), 10)
    first = page.locator(".strip .tile .id").first.inner_text()
    assert first != picked
    page.locator(".rg-slot-member-0 button").click()
    page.locator(".strip[data-label='1']").first.wait_for(timeout=10000)
    got = _labels(run, "class 1", 2)
    assert set(got.id_str) == {picked, first} and (got.label == 1).all()
    page.locator(".rg-slot-not-1 button").click()
    page.locator(".strip[data-label='0']").first.wait_for(timeout=10000)
    assert len(_labels(run, "class 1", 3)) == 3
    page.locator("#label-counts[data-members='2'][data-nots='1']").wait_for(timeout=10000)
    csv = page.request.get(url.rstrip("/") + page.locator("#guided-csv").get_attribute("href")).text()
    assert csv.startswith("id_str,rank,status,score") and ",ra,dec" in csv.splitlines()[0]
    page.screenshot(path=str(tmp_path / "labels_guided.png"))
    print(f"screenshots: {tmp_path}/labels_galaxy.png, labels_guided.png")
    assert page.dialogs == [] and page.external == [] and page.errors == []


def test_two_pages_labelling_at_once_lose_nothing(browser, label_server, tmp_path):  # noqa: F811
    url, run = label_server
    pages = []
    for _ in range(2):
        context = browser.new_context(viewport={"width": 1440, "height": 950})
        pg = context.new_page()
        pg.errors = []
        pg.on("pageerror", lambda e, pg=pg: pg.errors.append(str(e)))
        _open(pg, url)
        pg.get_by_placeholder("name, then Enter").fill("pair")
        pg.get_by_placeholder("name, then Enter").press("Enter")
        pg.locator("#label-counts", has_text="pair").wait_for(timeout=10000)
        pages.append(pg)
    picked = [_pick(pages[0], run, 0), _pick(pages[1], run, 2)]
    assert picked[0] != picked[1]
    for pg in pages:  # both clicks sent before either answer is awaited
        pg.locator(".rg-galaxy-member button").click(no_wait_after=True)
    for pg in pages:
        pg.locator("#galaxy-label[data-label='1']").wait_for(timeout=10000)
    got = _labels(run, "pair", 2)
    assert sorted(got.id_str) == sorted(picked) and (got.label == 1).all()
    pages[0].reload()
    _open(pages[0], url)
    pages[0].locator("select").first.select_option("pair")
    pages[0].locator("#label-counts[data-members='2']", has_text="pair").wait_for(timeout=10000)
    pages[0].screenshot(path=str(tmp_path / "labels_two_pages.png"))
    print(f"screenshot: {tmp_path}/labels_two_pages.png")
    assert pages[0].errors == [] and pages[1].errors == []
    for pg in pages:
        pg.context.close()
