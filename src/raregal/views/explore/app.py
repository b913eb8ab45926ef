"""The explorer's Bokeh document: map, cluster table and side panels, with their server callbacks.

One document per browser tab; the data (:class:`~raregal.views.explore.data.ExplorerData`) is shared.
The map is a datashader raster of the current view (re-rendered on the server after each pan or
zoom) under at most ``max_points`` hoverable markers; hovering shows the galaxy's thumbnail,
clicking picks the nearest galaxy (on the server, among all points) and shows it with its nearest
neighbours in representation space and its cluster's gallery; the lasso selects galaxies (again
among all points) for export. The picked galaxy and the shown cluster can be labelled members or
not of a named class, and the Guided tab shows the next galaxies to label
(:mod:`~raregal.views.explore.labelbar`); labelled galaxies are marked on the map.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from raregal.discovery.checks.per_cluster import describe_checks
from raregal.views.explore import panels

log = logging.getLogger("raregal")

HOVER = """
<div style="width:106px">
  <img src="/thumb/@row?s=96" width="96" height="96" style="display:block;margin:2px auto;background:#0b0d12">
  <div style="font-size:11px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap">@id_str</div>
  <div style="font-size:10px;color:#555">cluster @cluster &middot; p @prob{0.00}</div>
  <div class="rg-more" style="font-size:11px;font-weight:600;color:#b45309">$rg_more</div>
</div>
"""
#: Galaxies a tooltip shows at most: the ones nearest the pointer ("+N more" says how many others are there).
HOVER_NEAREST = 4
# A HoverTool filter run once per hovered marker: ranks the hovered markers by their screen distance
# to the pointer (once per hover event), keeps the nearest HOVER_NEAREST, and leaves the rank and the
# "+N more" line in the tooltip's special variables ($rg_rank sorts them, $rg_more is shown by the last).
HOVER_FILTER = """
const {vars} = cb_data;
const g = vars.glyph_view, hit = vars.indices;
let c = window.__raregal_hover;
if (c == null || c.hit !== hit || c.sx !== vars.sx || c.sy !== vars.sy) {
  const d = Array.from(hit, (i) => Math.hypot(g.sx[i] - vars.sx, g.sy[i] - vars.sy));
  const order = Array.from(hit.keys()).sort((a, b) => d[a] - d[b] || hit[a] - hit[b]);
  c = window.__raregal_hover = {hit, sx: vars.sx, sy: vars.sy, rank: new Map(order.map((k, r) => [hit[k], r]))};
}
const rank = c.rank.get(vars.index) ?? hit.length, shown = Math.min(nearest, hit.length);
vars.rg_rank = rank;
vars.rg_more = rank === shown - 1 && hit.length > shown ? `+${hit.length - shown} more galaxies here` : "";
return rank < nearest;
"""
#: The cluster table's "sets it apart" cell: wrapped onto up to 3 lines, the whole text on hover.
WORDS_CELL = ('<div title="<%- value %>" style="white-space:normal;line-height:1.3;overflow:hidden;'
              'display:-webkit-box;-webkit-line-clamp:3;-webkit-box-orient:vertical"><%- value %></div>')

FRAME_W, FRAME_H = 780, 640


def cluster_table(data):
    """The cluster table (its source and DataTable): size, persistence, mean p, checks, what sets it apart."""
    from bokeh.models import ColumnDataSource, DataTable, HTMLTemplateFormatter, NumberFormatter, TableColumn

    info = data.info
    table_src = ColumnDataSource(dict(
        cluster=info["cluster"].astype(int).tolist(), size=info["size"].astype(int).tolist(),
        persistence=info["persistence"].astype(float).fillna(np.nan).tolist(),
        mean_probability=info["mean_probability"].astype(float).tolist(),
        stability=[describe_checks(r) for _, r in info.iterrows()],
        words=[panels.morphology.describe(data.morph[k]) if k in data.morph else "" for k in info["cluster"]]))
    row_h = 52  # three lines of "sets it apart"
    table = DataTable(source=table_src, width=580, height=32 + row_h * min(5, max(1, len(info))),
                      row_height=row_h, index_position=None, name="cluster_table", sortable=True, columns=[
                          TableColumn(field="cluster", title="cluster", width=48),
                          TableColumn(field="size", title="size", width=44),
                          TableColumn(field="persistence", title="persist.", width=56,
                                      formatter=NumberFormatter(format="0.000")),
                          TableColumn(field="mean_probability", title="mean p", width=48,
                                      formatter=NumberFormatter(format="0.00")),
                          TableColumn(field="stability", title="checks", width=84,
                                      formatter=HTMLTemplateFormatter(template=WORDS_CELL)),
                          TableColumn(field="words", title="sets it apart", width=300,
                                      formatter=HTMLTemplateFormatter(template=WORDS_CELL))])
    return table_src, table


def _map_figure(data):
    """The map: whole-map overview, the view's raster, hoverable markers and the focus, lasso and picked
    layers; returns the figure and its sources (``img``, ``pts``, ``focus``, ``lasso``, ``picked``)."""
    from bokeh.models import ColumnDataSource, Range1d
    from bokeh.plotting import figure

    from raregal.views.report.maps import shade

    (x0, x1), (y0, y1) = data.x_range, data.y_range
    p = figure(frame_width=FRAME_W, frame_height=FRAME_H, x_range=Range1d(x0, x1), y_range=Range1d(y0, y1),
               tools="pan,wheel_zoom,box_zoom,reset,save", active_scroll="wheel_zoom",
               x_axis_label="UMAP 1", y_axis_label="UMAP 2", name="map", toolbar_location="above")
    p.grid.visible = False
    # the whole map once, under the view's own (opaque) raster: shows at once while a new view renders
    overview = shade(data.x, data.y, data.labels, FRAME_W, FRAME_H, (x0, x1), (y0, y1), colors=data.colors)
    p.image_rgba(image=[overview], x=x0, y=y0, dw=x1 - x0, dh=y1 - y0, global_alpha=0.6)
    layers = {"img": ("image", "x", "y", "dw", "dh"),
              "pts": ("x", "y", "row", "id_str", "cluster", "prob", "color", "alpha"),
              "focus": ("x", "y"), "lasso": ("x", "y"), "picked": ("x", "y", "size", "color"),
              "labelled": ("x", "y", "color")}
    src = {name: ColumnDataSource({c: [] for c in cols}) for name, cols in layers.items()}
    p.image_rgba(image="image", x="x", y="y", dw="dw", dh="dh", source=src["img"])
    markers = p.scatter("x", "y", source=src["pts"], size=6, fill_color="color", fill_alpha="alpha", line_color=None,
                        hover_fill_color="color", hover_fill_alpha=1.0, hover_line_color="black",
                        selection_fill_alpha="alpha", nonselection_fill_alpha="alpha", name="points")
    p.scatter("x", "y", source=src["focus"], size=8, fill_color=None, line_color="#111", line_width=1.2,
              line_alpha=0.8)
    p.scatter("x", "y", source=src["lasso"], marker="x", size=7, line_color="#111", line_width=1.2)
    p.scatter("x", "y", source=src["picked"], size="size", fill_color=None, line_color="color", line_width=2.5)
    p.scatter("x", "y", source=src["labelled"], marker="square", size=10, fill_color=None, line_color="color",
              line_width=2, name="labelled")
    _cluster_labels(p, data)
    _map_tools(p, markers)
    return p, src


def _cluster_labels(p, data) -> None:
    """Each cluster's number at its members' median position, in its colour."""
    from bokeh.models import ColumnDataSource, LabelSet

    med = data.medians
    labels = ColumnDataSource(dict(x=[v[0] for v in med.values()], y=[v[1] for v in med.values()],
                                   text=[str(k) for k in med], color=[data.colors[k] for k in med]))
    p.add_layout(LabelSet(x="x", y="y", text="text", source=labels, text_color="color", text_font_size="13px",
                          text_font_style="bold", y_offset=8, text_align="center", text_baseline="bottom",
                          background_fill_color="white", background_fill_alpha=0.75,
                          border_line_color="color", border_line_alpha=0.6))


def _map_tools(p, markers) -> None:
    """Hover (thumbnails of the few markers nearest the pointer) and lasso, both on the markers."""
    from bokeh.models import CustomJS, HoverTool, LassoSelectTool

    nearest_only = CustomJS(args=dict(nearest=HOVER_NEAREST), code=HOVER_FILTER)
    p.add_tools(HoverTool(renderers=[markers], tooltips=HOVER, attachment="right", filters={"@row": nearest_only},
                          sort_by="$rg_rank"))
    p.add_tools(LassoSelectTool(renderers=[markers]))


def _side_tabs(data, bar):
    """The Cluster, Galaxy, Selection and Guided panels in tabs, the first two under ``bar``'s label buttons
    (a :class:`~raregal.views.explore.labelbar.LabelBar`); returns (tabs, {"cluster"|"galaxy"|"selection": Div})."""
    from bokeh.layouts import column
    from bokeh.models import Div, InlineStyleSheet, TabPanel, Tabs

    sheet = InlineStyleSheet(css=panels.CSS)

    def panel_div(text, name):
        return Div(text=text, width=560, name=name, stylesheets=[sheet],
                   styles={"overflow-y": "auto", "max-height": "560px"})

    divs = {"cluster": panel_div('<div class="rg muted">Click a cluster in the table, or a galaxy on the map.</div>',
                                 "cluster_panel"),
            "galaxy": panel_div('<div class="rg muted">Click a galaxy on the map (or find it by id) to see it and '
                                'the galaxies most like it.</div>', "galaxy_panel"),
            "selection": panel_div(panels.selection_panel(data, np.zeros(0, np.int64), None), "selection_panel")}
    tabs = Tabs(tabs=[TabPanel(child=column(bar.cluster_controls(), divs["cluster"]), title="Cluster"),
                      TabPanel(child=column(bar.galaxy_controls(), divs["galaxy"]), title="Galaxy"),
                      TabPanel(child=divs["selection"], title="Selection"),
                      TabPanel(child=bar.guided_panel(), title="Guided")], width=580, name="tabs")
    return tabs, divs


class _Session:
    """One browser tab's state and server callbacks: the view, the picked galaxy, cluster and selection,
    and its labelling widgets (``bar``, a :class:`~raregal.views.explore.labelbar.LabelBar`)."""

    def __init__(self, data, p, src, tabs, divs, status, table_src, bar):
        self.data, self.p, self.src, self.tabs, self.divs = data, p, src, tabs, divs
        self.status, self.table_src, self.bar = status, table_src, bar
        self.current = bar.current  # what the SAMP and label buttons act on: rows, cluster, row
        bar.on_labels = self.show_labels
        bar.refresh()

    def render(self, x0, x1, y0, y1):
        """The view's raster and markers (all galaxies in view when few enough), and the status line."""
        from raregal.views.report.maps import shade

        data, t0 = self.data, time.perf_counter()
        rgba = shade(data.x, data.y, data.labels, FRAME_W, FRAME_H, (x0, x1), (y0, y1), colors=data.colors,
                     background="white")
        self.src["img"].data = dict(image=[rgba], x=[x0], y=[y0], dw=[x1 - x0], dh=[y1 - y0])
        rows, total = data.in_view(x0, x1, y0, y1)
        full = total <= data.max_points
        self.src["pts"].data = dict(x=data.x[rows], y=data.y[rows], row=rows, id_str=data.ids[rows].tolist(),
                                    cluster=data.labels[rows], prob=data.prob[rows],
                                    color=data.color_of[rows].tolist(), alpha=np.full(len(rows), 0.85 if full else 0.0))
        self.status.text = (f"{total:,} galaxies in view; " + (
            "all shown as points." if full else
            f"shown as a density image (hover works on {len(rows):,} of them; zoom in to see every galaxy).")
            + " Drag to pan, scroll to zoom, lasso (toolbar) to select, click a galaxy for more like it.")
        log.debug("explore: view with %d galaxies (%d markers) prepared in %.3f s", total, len(rows),
                  time.perf_counter() - t0)

    def show_cluster(self, k):
        data = self.data
        self.current["cluster"] = int(k)
        self.divs["cluster"].text = panels.cluster_panel(data, k)
        rows = data.members(k, 5000)
        self.src["focus"].data = dict(x=data.x[rows], y=data.y[rows])
        self.bar.refresh()
        self.tabs.active = 0

    def show_galaxy(self, r):
        data = self.data
        self.current["row"] = int(r)
        self.divs["galaxy"].text = panels.galaxy_panel(data, r)
        near, _ = data.similar(r, 12)
        near = near[near < data.n]  # look-alikes the pre-filter dropped are not on the map
        self.src["picked"].data = dict(x=np.r_[data.x[r], data.x[near]], y=np.r_[data.y[r], data.y[near]],
                                       size=[18] + [11] * len(near), color=["#e11d48"] + ["#f59e0b"] * len(near))
        if data.labels[r] >= 0:
            self.current["cluster"] = int(data.labels[r])
            self.divs["cluster"].text = panels.cluster_panel(data, int(data.labels[r]))
        self.bar.refresh()
        self.tabs.active = 1

    def show_labels(self, table, class_name: str) -> None:
        """Mark the galaxies on the map labelled in ``class_name`` (``table``: every label of the run)."""
        data = self.data
        lab = data.guide.labels(class_name, table)
        rows = data.guide.rows_of(lab.index)
        on_map = (rows >= 0) & (rows < data.n)
        rows, values = rows[on_map], lab.to_numpy()[on_map]
        self.src["labelled"].data = dict(x=data.x[rows], y=data.y[rows],
                                         color=np.where(values == 1, "#16a34a", "#dc2626").tolist())

    def on_ranges(self, event):
        if None in (event.x0, event.x1, event.y0, event.y1):
            return
        self.render(event.x0, event.x1, event.y0, event.y1)

    def on_tap(self, event):
        xr, yr = self.p.x_range, self.p.y_range
        r = self.data.nearest(event.x, event.y, 10 * (xr.end - xr.start) / FRAME_W,
                              10 * (yr.end - yr.start) / FRAME_H)
        if r is not None:
            self.show_galaxy(r)

    def on_lasso(self, event):
        geom = event.geometry or {}
        if not event.final or geom.get("type") != "poly":
            return
        data = self.data
        rows = data.in_polygon(geom.get("x", []), geom.get("y", []))
        self.current["rows"] = rows
        token = data.remember(rows) if len(rows) else None
        self.divs["selection"].text = panels.selection_panel(data, rows, token)
        shown = rows[:20000]
        self.src["lasso"].data = dict(x=data.x[shown], y=data.y[shown])
        self.src["pts"].selected.indices = []
        self.tabs.active = 2

    def on_table(self, attr, old, new):
        if new:
            self.show_cluster(int(self.table_src.data["cluster"][new[0]]))

    def on_find(self, attr, old, new):
        hits = np.flatnonzero(self.data.ids == new.strip())
        if len(hits):
            self.show_galaxy(int(hits[0]))
        else:
            self.divs["galaxy"].text = f'<div class="rg">No kept galaxy has id_str {panels.escape(new)!s}.</div>'
            self.tabs.active = 1

    def connect(self, find) -> None:
        """Wire the callbacks to the map's events, the cluster table and the find box."""
        from bokeh.events import RangesUpdate, SelectionGeometry, Tap

        self.p.on_event(RangesUpdate, self.on_ranges)
        self.p.on_event(Tap, self.on_tap)
        self.p.on_event(SelectionGeometry, self.on_lasso)
        self.table_src.selected.on_change("indices", self.on_table)
        find.on_change("value", self.on_find)
        self.tabs.on_change("active", lambda attr, old, new: self.bar.on_tab(new))


def make_document(doc, data, base_url: str | None = None) -> _Session:
    """Fill the Bokeh ``doc`` with the explorer for ``data`` (an ExplorerData); returns the tab's session.

    ``base_url`` is where SAMP applications on this machine reach the explorer
    (``http://127.0.0.1:PORT/``); without it the SAMP buttons are left out.
    """
    from raregal.views.explore.labelbar import LabelBar

    from bokeh.layouts import column, row
    from bokeh.models import Div, TextInput

    p, src = _map_figure(data)
    status = Div(text="", styles={"font-size": "12.5px", "color": "#5b6472"}, width=FRAME_W + 60)
    title = Div(text=(f"<b style='font-size:17px'>raregal explore</b> &nbsp; "
                      f"<span style='color:#5b6472'>{panels.escape(data.run.path.resolve().name)}: "
                      f"{data.n:,} kept galaxies, {len(data.info)} clusters</span>"), width=FRAME_W + 60)
    table_src, table = cluster_table(data)
    find = TextInput(placeholder="id_str of a galaxy", title="Find a galaxy by id", width=300)
    bar = LabelBar(doc, data, {"rows": None, "cluster": None, "row": None}, base_url=base_url)
    tabs, divs = _side_tabs(data, bar)
    session = _Session(data, p, src, tabs, divs, status, table_src, bar)
    session.connect(find)
    (x0, x1), (y0, y1) = data.x_range, data.y_range
    session.render(x0, x1, y0, y1)
    right = [table, find, bar.class_controls(), tabs]
    if base_url is not None:
        from raregal.views.explore.sampbar import samp_controls

        right.insert(2, samp_controls(doc, data, base_url, session.current))
    doc.add_root(row(column(title, p, status), column(*right), name="explorer"))
    doc.title = f"raregal explore: {data.run.path.resolve().name}"
    return session
