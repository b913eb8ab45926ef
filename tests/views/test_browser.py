"""End-to-end: the report and the explorer in headless Chromium (Debian's chromium, driven by Playwright).

`make test` runs scripts/ensure_browser.sh first; where Chromium cannot be installed these tests
are skipped with the reason (or fail, when RAREGAL_REQUIRE_BROWSER=1 is set, as CI may do). Screenshots go to pytest's tmp_path (their paths are printed).
"""

from __future__ import annotations

import os
import re
import shutil

import pandas as pd
import pytest

from conftest import TINY_EVIL_ID, explorer_process

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("RAREGAL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _skip_reason() -> str | None:
    if not CHROMIUM:
        return "no chromium on PATH (run `make browser` or scripts/ensure_browser.sh as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _skip_reason()
    if reason and os.environ.get("RAREGAL_REQUIRE_BROWSER"):
        pytest.fail(f"RAREGAL_REQUIRE_BROWSER is set but {reason}")
    if reason:
        print(f"SKIP browser tests: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 950})
    pg = context.new_page()
    pg.dialogs, pg.external, pg.errors = [], [], []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.on("request", lambda r: None if r.url.startswith(("file:", "data:", "http://127.0.0.1", "ws://127.0.0.1"))
          else pg.external.append(r.url))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    context.close()


def test_report_renders_with_every_image(page, tiny_report, tmp_path):
    page.goto(tiny_report.as_uri())
    page.evaluate("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=20000)
    broken = page.evaluate("[...document.images].filter(i => !(i.naturalWidth > 0)).map(i => i.src)")
    n_images = page.evaluate("document.images.length")
    assert broken == [] and n_images > 100
    # the HTML id is shown as text and never runs
    assert page.get_by_text(TINY_EVIL_ID, exact=True).count() >= 1
    assert page.dialogs == [] and page.external == [] and page.errors == []
    # clicking a cluster in the table jumps to its gallery
    page.click("#clusters table a[href='#cluster-2']")
    page.wait_for_function("location.hash === '#cluster-2'")
    assert page.locator("#cluster-2 .tile img").count() >= 16
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    page.locator("#cluster-0").screenshot(path=str(tmp_path / "report_cluster0.png"))
    print(f"screenshots: {tmp_path}/report.png, report_cluster0.png")


@pytest.fixture(scope="module")
def explorer_url(tiny_run_dir, browser):
    """``raregal explore`` in a subprocess on 127.0.0.1 (free port), at most 200 markers at once."""
    with explorer_process(tiny_run_dir, 200) as url:
        yield url


_MAP_JS = """() => {
  for (const root of Bokeh.index) for (const v of root.owner.query(v => v.model.name === 'map')) return v;
  return null; }"""


def _to_page(page, x, y):
    """Page pixel position of map coordinates (x, y), through Bokeh's own scales."""
    return page.evaluate(f"""([x, y]) => {{ const v = ({_MAP_JS})();
        const r = v.canvas_view.el.getBoundingClientRect();
        return [r.left + v.frame.x_scale.compute(x), r.top + v.frame.y_scale.compute(y)]; }}""", [float(x), float(y)])


def _points(page):
    return page.evaluate(f"""() => {{ const v = ({_MAP_JS})();
        const r = v.model.renderers.find(r => r.name === 'points'); const d = r.data_source.data;
        return {{n: d.x.length, x: Array.from(d.x), y: Array.from(d.y), id: Array.from(d.id_str),
                 alpha: Array.from(d.alpha)}}; }}""")


def test_explorer_hover_click_lasso(page, explorer_url, tiny_run_dir, tmp_path):
    page.goto(explorer_url)
    page.wait_for_function(f"() => {{ const v = ({_MAP_JS})(); return v && v.model.renderers.find("
                           "r => r.name === 'points').data_source.data.x.length > 0 }", timeout=30000)
    status = page.get_by_text(re.compile(r"galaxies in view"))
    # 280 galaxies > 200 markers: overview is the density image with invisible hover markers
    assert "density image" in status.inner_text()
    pts = _points(page)
    assert pts["n"] == 200 and max(pts["alpha"]) == 0.0
    page.wait_for_timeout(300)

    # zoom in on the HTML-named galaxy until every galaxy in view is a visible marker
    clusters = pd.read_parquet(tiny_run_dir / "clusters.parquet")
    evil = clusters[clusters.id_str == TINY_EVIL_ID].iloc[0]
    px, py = _to_page(page, evil.umap2_0, evil.umap2_1)
    page.mouse.move(px, py)
    for _ in range(8):  # wheel-zoom in (each step re-renders on the server) until all are markers
        before = status.inner_text()
        page.mouse.wheel(0, -250)
        for _ in range(50):
            if status.inner_text() != before:
                break
            page.wait_for_timeout(100)
        if "all shown as points" in status.inner_text():
            break
    assert "all shown as points" in status.inner_text()
    pts = _points(page)
    assert pts["n"] < 200 and min(pts["alpha"]) > 0 and TINY_EVIL_ID in pts["id"]

    # hover: a tooltip with the galaxy's thumbnail and its id as text
    px, py = _to_page(page, evil.umap2_0, evil.umap2_1)
    page.mouse.move(px + 1, py + 1)
    page.mouse.move(px, py)
    tip = page.locator(".bk-Tooltip img").first
    tip.wait_for(state="visible", timeout=10000)
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=tip.element_handle(), timeout=10000)
    page.screenshot(path=str(tmp_path / "explorer_hover.png"))
    assert page.get_by_text(TINY_EVIL_ID, exact=True).first.is_visible()  # shown as text in the tooltip

    # click the galaxy: its panel, and 12 look-alikes shown as images
    page.mouse.click(px, py)
    similar = page.locator("#similar img")
    similar.first.wait_for(timeout=10000)
    assert similar.count() == 12
    assert TINY_EVIL_ID in page.locator("#galaxy-panel").inner_text()
    page.wait_for_function("() => [...document.querySelectorAll('*')].filter(e => e.shadowRoot)"
                           ".flatMap(e => [...e.shadowRoot.querySelectorAll('#similar img')])"
                           ".every(i => i.complete && i.naturalWidth > 0)", timeout=10000)
    page.screenshot(path=str(tmp_path / "explorer_galaxy.png"))

    # click a cluster in the table: its gallery
    page.locator(".slick-cell.l0", has_text=re.compile(r"^2$")).first.click()
    panel = page.locator("#cluster-panel[data-cluster='2']")
    panel.wait_for(timeout=10000)
    size = int((clusters.cluster == 2).sum())
    assert panel.locator("img").count() == min(36, size)
    page.screenshot(path=str(tmp_path / "explorer_cluster.png"))

    # lasso around cluster 1 (back at full view) and export the selection
    page.get_by_title("Reset").first.click() if page.get_by_title("Reset").count() else None
    page.wait_for_timeout(500)
    page.locator(".bk-tool-icon-lasso-select").first.click()
    m = clusters[clusters.cluster == 1]
    cx, cy = m.umap2_0.median(), m.umap2_1.median()
    r = 3 * max(m.umap2_0.std(), m.umap2_1.std())
    import math
    ring = [_to_page(page, cx + r * math.cos(t / 12 * 2 * math.pi), cy + r * math.sin(t / 12 * 2 * math.pi))
            for t in range(13)]
    page.mouse.move(*ring[0])
    page.mouse.down()
    for p_ in ring[1:]:
        page.mouse.move(*p_, steps=3)
    page.mouse.up()
    sel = page.locator("#selection-panel")
    sel.wait_for(timeout=10000)
    count = int(sel.get_attribute("data-count"))
    assert count >= int((clusters.cluster == 1).sum()) * 0.9
    href = page.locator("#export-link").get_attribute("href")
    csv = page.request.get(explorer_url.rstrip("/") + href).text()
    exported = pd.read_csv(__import__("io").StringIO(csv), dtype={"id_str": str})
    assert len(exported) == count and (exported.cluster == 1).mean() > 0.8
    page.screenshot(path=str(tmp_path / "explorer_lasso.png"))
    assert page.dialogs == [] and page.external == [] and page.errors == []
    print(f"screenshots: {tmp_path}/explorer_*.png")
