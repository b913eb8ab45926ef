"""HTML of the explorer's side panels (cluster gallery, one galaxy and its look-alikes, a selection, labels).

Plain strings built with :func:`html.escape` around every catalog value; images are served by
the explorer's own ``/thumb/<row>`` endpoint, so nothing leaves the machine. The only outside
link is the galaxy panel's Legacy Surveys viewer link (when the run has ``ra``/``dec``), an
ordinary link opened in a new tab when clicked.
"""

from __future__ import annotations

from html import escape

import numpy as np

from raregal.inputs import sky
from raregal.discovery.checks.per_cluster import describe_checks
from raregal.views.report import morphology

CSS = """
.rg { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color:#1d2430; }
.rg h3 { margin: 4px 0 6px; font-size: 15px; }
.rg .muted { color:#5b6472; }
.rg .grid { display:grid; grid-template-columns:repeat(auto-fill, 88px); gap:5px; margin-top:6px; }
.rg .tile { background:#0b0d12; border-radius:5px; padding:3px; text-align:center; }
.rg .tile img { width:82px; height:82px; display:block; margin:0 auto; }
.rg .tile .id { color:#e5e7eb; font-size:9.5px; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.rg .tile .p { color:#9ca3af; font-size:9px; }
.rg .hero { display:flex; gap:12px; align-items:flex-start; }
.rg .hero img { width:160px; height:160px; border-radius:6px; background:#0b0d12; }
.rg table td { padding:1px 8px 1px 0; }
.rg .swatch { display:inline-block; width:11px; height:11px; border-radius:3px; margin-right:5px; vertical-align:-1px; }
.rg a { color:#2f5bd3; }
.rg .lab { font-size:11px; text-align:center; margin-top:2px; color:#5b6472; }
.rg .lab1 { color:#15803d; font-weight:600; }
.rg .lab0 { color:#b91c1c; font-weight:600; }
.rg.strip { width:104px; }
.rg.strip .tile { width:88px; height:124px; box-sizing:border-box; margin:0 auto; }
"""


def tile(row: int, id_str: str, note: str) -> str:
    """One gallery tile: thumbnail (opens the image larger), id, a short note."""
    i = escape(str(id_str))
    return (f'<div class="tile" data-row="{int(row)}"><a href="/thumb/{int(row)}?s=424" target="_blank">'
            f'<img loading="lazy" src="/thumb/{int(row)}?s=82" width="82" height="82" alt="{i}" title="{i}"></a>'
            f'<div class="id">{i}</div><div class="p">{escape(note)}</div></div>')


def cluster_panel(data, k: int, n: int = 36) -> str:
    """Gallery of cluster ``k``: facts, distinctive morphology, its most confident members."""
    info = data.info[data.info["cluster"] == k]
    if info.empty:
        return f'<div class="rg">No cluster {int(k)}.</div>'
    r = info.iloc[0]
    rows = data.members(k, n)
    pers = "n/a" if not np.isfinite(r["persistence"]) else f"{r['persistence']:.3f}"
    words = morphology.describe(data.morph[k]) if k in data.morph else "predicted morphology not available"
    checks = describe_checks(r)  # stability over seeds, artifact class (raregal.discovery.checks.per_cluster)
    checks = f'<b class="checks">{escape(checks)}</b> &middot; ' if checks else ""
    tiles = "".join(tile(i, data.ids[i], f"p = {data.prob[i]:.2f}") for i in rows)
    return (f'<div class="rg" id="cluster-panel" data-cluster="{int(k)}">'
            f'<h3><span class="swatch" style="background:{escape(data.colors.get(int(k), "#888"))}"></span>'
            f'Cluster {int(k)}</h3>'
            f'<div class="muted">{int(r["size"]):,} galaxies &middot; mean membership probability '
            f'{r["mean_probability"]:.2f} &middot; persistence {pers} &middot; {checks}'
            f'<a href="/cluster/{int(k)}.csv" download>members as CSV</a></div>'
            f'<div>Sets it apart: <b>{escape(words)}</b></div>'
            f'<div class="muted">Its {len(rows)} most confident members:</div><div class="grid">{tiles}</div></div>')


def galaxy_panel(data, row: int, n_similar: int = 12) -> str:
    """One galaxy, larger, with its facts and 'more like this': nearest neighbours in representation space."""
    k = int(data.labels[row])
    facts = [("id_str", escape(str(data.ids[row]))),
             ("cluster", "none" if k < 0 else f"{k} (membership probability {data.prob[row]:.2f})")]
    if "true_class" in data.table.columns:
        facts.append(("true_class", escape(str(data.table["true_class"].iloc[row]))))
    if data.has_sky:
        facts += _sky_facts(data, row)
    facts.append(("map position", f"{data.x[row]:.3f}, {data.y[row]:.3f}"))
    table = "".join(f"<tr><td class='muted'>{a}</td><td>{b}</td></tr>" for a, b in facts)
    if data.neighbours is None:
        why = escape(data.neighbours_off or "no representation table")
        similar = f'<div class="muted">"More like this" is not available: {why}.</div>'
    else:
        rows, dist = data.similar(row, n_similar)
        tiles = "".join(tile(i, data.all_ids[i], f"d = {d:.2f}" + _where(data, i)) for i, d in zip(rows, dist))
        similar = (f'<h3>More like this</h3><div class="muted">The {len(rows)} nearest galaxies in representation '
                   f'space, of all the run\'s galaxies ({escape(data.neighbours.metric)} distance d; c = cluster; '
                   f'filtered = dropped by the pre-filter, not on the map):</div>'
                   f'<div class="grid" id="similar">{tiles}</div>')
    return (f'<div class="rg" id="galaxy-panel" data-row="{int(row)}"><div class="hero">'
            f'<a href="/thumb/{int(row)}?s=424" target="_blank"><img src="/thumb/{int(row)}?s=160" alt="galaxy"></a>'
            f'<table>{table}</table></div>{similar}</div>')


def _where(data, row: int) -> str:
    """A look-alike tile's note after its distance: its cluster, or that the pre-filter dropped it."""
    if row >= data.n:
        return " · filtered"
    return "" if data.labels[row] < 0 else f" · c{data.labels[row]}"


def _sky_facts(data, row: int) -> list[tuple[str, str]]:
    """Rows of the galaxy panel for its sky position: RA, Dec (degrees and h m s / d m s) and the viewer link."""
    ra, dec = float(data.ra[row]), float(data.dec[row])
    url = sky.viewer_url(ra, dec, data.sky_layer)
    if url is None:
        return [("RA, Dec", "unknown")]
    return [("RA, Dec", f'<span id="galaxy-radec">{sky.format_deg(ra, dec)}</span> &deg;'),
            ("", f'<span class="muted">{escape(sky.format_hms_dms(ra, dec))}</span>'),
            ("sky", f'<a id="galaxy-sky" href="{escape(url)}" target="_blank" rel="noopener">Legacy Surveys '
                    f'viewer ({escape(data.sky_layer)}) &#8599;</a>')]


def selection_panel(data, rows: np.ndarray, token: str | None, n: int = 24) -> str:
    """A lasso selection: counts, export link and a gallery of (up to ``n``) of its galaxies."""
    if not len(rows):
        return '<div class="rg muted">Nothing selected. Use the lasso tool on the map to select galaxies.</div>'
    in_cl = int((data.labels[rows] >= 0).sum())
    by_cluster = np.unique(data.labels[rows][data.labels[rows] >= 0], return_counts=True)
    top = ", ".join(f"{int(c)}: {int(m)}" for c, m in sorted(zip(*by_cluster), key=lambda t: -t[1])[:8])
    show = rows[np.argsort(-data.prob[rows], kind="stable")][:n]
    tiles = "".join(tile(i, data.ids[i], "none" if data.labels[i] < 0 else f"c{data.labels[i]}") for i in show)
    return (f'<div class="rg" id="selection-panel" data-count="{len(rows)}"><h3>{len(rows):,} galaxies selected</h3>'
            f'<div class="muted">{in_cl:,} of them in clusters{(" (" + top + ")") if top else ""} &middot; '
            f'<a id="export-link" href="/export/{escape(token or "")}.csv" download>export the selection as CSV</a></div>'
            f'<div class="grid">{tiles}</div></div>')


# ---- labelling (RUN_DIR/labels.parquet) and the guided search's "next to label" strip ----------------
#: How a label (1 member, 0 not, -1 none) is said in the panels.
LABEL_WORDS = {1: "member", 0: "not a member", -1: "not labelled"}


def class_counts(class_name: str, members: int, nots: int, off: str = "") -> str:
    """The counts line of the current class: members and non-members labelled so far (or why labelling is off)."""
    if off:
        return f'<div class="rg muted" id="label-counts">Labelling is off: {escape(off)}</div>'
    return (f'<div class="rg" id="label-counts" data-members="{int(members)}" data-nots="{int(nots)}">'
            f'<b>{escape(class_name)}</b>: {int(members):,} member{"" if members == 1 else "s"}, '
            f'{int(nots):,} not <span class="muted">&middot; saved in labels.parquet</span></div>')


def galaxy_label(id_str: str, class_name: str, label: int) -> str:
    """The picked galaxy's label in the current class."""
    return (f'<div class="rg" id="galaxy-label" data-label="{int(label)}">{escape(str(id_str))} in '
            f'<b>{escape(class_name)}</b>: <b class="lab{int(label)}">{LABEL_WORDS[int(label)]}</b></div>')


def cluster_label(k: int, size: int, members: int, nots: int, class_name: str) -> str:
    """How many of cluster ``k``'s ``size`` members are labelled in the current class."""
    return (f'<div class="rg" id="cluster-label" data-members="{int(members)}" data-nots="{int(nots)}">'
            f'Cluster {int(k)} ({int(size):,} galaxies) in <b>{escape(class_name)}</b>: {int(members):,} member, '
            f'{int(nots):,} not, {int(size - members - nots):,} not labelled</div>')


def strip_tile(data, row: int, score: float, label: int) -> str:
    """One galaxy of the "next to label" strip: thumbnail, id, score (and cluster or 'filtered'), its label."""
    note = f"score {score:.3f}" + _where(data, int(row))
    return (f'<div class="rg strip" data-label="{int(label)}">{tile(row, data.all_ids[int(row)], note)}'
            f'<div class="lab lab{int(label)}">{LABEL_WORDS[int(label)]}</div></div>')


def guided_header(class_name: str, shown: int, message: str, links: bool) -> str:
    """The Guided tab's heading: what the strip is, its export links (when there are proposals), a message."""
    from urllib.parse import quote

    url = escape(quote(class_name, safe=""))
    exports = (f' &middot; ranked candidates: <a id="guided-csv" href="/guided/{url}.csv" download>CSV</a>, '
               f'<a id="guided-fits" href="/guided/{url}.fits" download>FITS</a>') if links else ""
    head = (f"The next {int(shown)} galaxies to label for <b>{escape(class_name)}</b>, best first"
            if shown else f"Next to label for <b>{escape(class_name)}</b>")
    note = f'<div class="muted" id="guided-message">{escape(message)}</div>' if message else ""
    return (f'<div class="rg" id="guided-header" data-shown="{int(shown)}"><h3>{head}</h3>'
            f'<div class="muted">Proposed by the guided search from this class\'s labels, among all the run\'s '
            f'galaxies (filtered = dropped by the pre-filter){exports}</div>{note}</div>')
