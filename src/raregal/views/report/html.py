"""The report's HTML page: a Jinja2 template with autoescaping, so catalog strings show as text.

Every value that comes from a catalog or a run (ids, column names, parameters, paths) goes
through Jinja2's HTML escaping; the page links only to files inside the report folder, so it
opens offline from a USB stick or an e-mail attachment folder. The one exception: when the run
has sky coordinates, each gallery tile's position is an ordinary link (``target=_blank
rel=noopener``) to the Legacy Surveys viewer, followed only when clicked.
"""

from __future__ import annotations

import jinja2

CSS = """
:root { --ink:#1d2430; --muted:#5b6472; --line:#e3e6eb; --bg:#f6f7f9; --accent:#2f5bd3; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
       color:var(--ink); background:var(--bg); }
header { background:#111827; color:#f3f4f6; padding:18px 32px; }
header h1 { margin:0; font-size:22px; font-weight:600; }
header .sub { color:#9ca3af; font-size:13px; margin-top:2px; word-break:break-all; }
nav { position:sticky; top:0; z-index:5; background:#fff; border-bottom:1px solid var(--line);
      padding:8px 32px; display:flex; gap:18px; flex-wrap:wrap; font-size:14px; }
nav a { color:var(--accent); text-decoration:none; }
main { max-width:1280px; margin:0 auto; padding:12px 32px 60px; }
section { scroll-margin-top:48px; background:#fff; border:1px solid var(--line); border-radius:10px; padding:18px 22px; margin:18px 0; }
h2 { margin:0 0 12px; font-size:19px; }
h3 { margin:0; font-size:17px; }
.cards { display:flex; flex-wrap:wrap; gap:10px; }
.card { border:1px solid var(--line); border-radius:8px; padding:8px 14px; min-width:130px; background:#fbfcfd; }
.card .n { font-size:21px; font-weight:650; }
.card .l { color:var(--muted); font-size:12.5px; }
.arrow { align-self:center; color:#9aa3af; font-size:20px; }
table { border-collapse:collapse; font-size:13.5px; }
th, td { text-align:left; padding:4px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--muted); font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
.fig { max-width:100%; height:auto; border:1px solid var(--line); border-radius:6px; }
.caption { color:var(--muted); font-size:13px; margin-top:6px; }
.swatch { display:inline-block; width:13px; height:13px; border-radius:3px; vertical-align:-1px; margin-right:6px; }
.cluster-head { display:flex; align-items:baseline; gap:14px; flex-wrap:wrap; margin-bottom:8px; }
.facts { color:var(--muted); font-size:13.5px; }
.morph { margin:6px 0 10px; }
.morph b { color:var(--ink); }
.cluster-body { display:grid; grid-template-columns: minmax(0,1fr) 280px; gap:18px; }
@media (max-width: 1000px) { .cluster-body { grid-template-columns: 1fr; } }
.gallery { display:grid; grid-template-columns:repeat(auto-fill, 136px); gap:6px; }
.tile { background:#0b0d12; border-radius:6px; padding:4px; text-align:center; }
.tile img { width:128px; height:128px; display:block; margin:0 auto; image-rendering:auto; }
.tile .id { color:#e5e7eb; font-size:10.5px; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.tile .p { color:#9ca3af; font-size:10px; }
.tile.missing { outline:2px dashed #b45309; }
.tile .sky { font-size:10px; white-space:nowrap; }
.tile .sky a { color:#93c5fd; text-decoration:none; }
.tile .sky a:hover { text-decoration:underline; }
.side img { width:100%; border:1px solid var(--line); border-radius:6px; }
.side .tree-text { font-size:12.5px; color:var(--muted); }
.warn { background:#fff7ed; border:1px solid #fed7aa; border-radius:8px; padding:8px 12px; font-size:13.5px; }
a.dl { margin-right:10px; }
details summary { cursor:pointer; color:var(--accent); }
code { font-size:12.5px; background:#f1f3f5; padding:1px 4px; border-radius:4px; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>raregal report: {{ title }}</title>
<style>{{ css | safe }}</style></head>
<body>
<header><h1>raregal report: {{ title }}</h1><div class="sub">{{ run_path }}</div></header>
<nav><a href="#overview">Overview</a><a href="#map">Map</a><a href="#figure">Figure</a>
<a href="#tree">Condensed tree</a><a href="#clusters">Clusters ({{ clusters|length }})</a>
{% if merges is not none %}<a href="#merges">Merge suggestions ({{ merges|length }})</a>{% endif %}
<a href="#downloads">Downloads</a></nav>
<main>
<section id="overview"><h2>Overview</h2>
<div class="cards">
{% for label, n in counts %}{% if not loop.first %}<div class="arrow">&rarr;</div>{% endif %}
<div class="card"><div class="n" data-count="{{ label }}">{{ "{:,}".format(n) }}</div><div class="l">{{ label }}</div></div>
{% endfor %}
</div>
<div class="cards" style="margin-top:10px">
<div class="card"><div class="n" id="n-clusters">{{ clusters|length }}</div><div class="l">clusters</div></div>
<div class="card"><div class="n">{{ "{:,}".format(n_clustered) }}</div><div class="l">galaxies in clusters</div></div>
<div class="card"><div class="n">{{ "%.1f"|format(100 * fraction_clustered) }}%</div><div class="l">of kept galaxies clustered</div></div>
</div>
{% if warnings %}<div class="warn" style="margin-top:12px">{% for w in warnings %}<div>{{ w }}</div>{% endfor %}</div>{% endif %}
<div style="display:flex; gap:40px; flex-wrap:wrap; margin-top:14px">
<div><h3 style="margin-bottom:6px">Parameters</h3><table>
{% for k, v in parameters %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table></div>
{% if metrics or metric_tables %}<div><h3 style="margin-bottom:6px">Metrics (against true_class)</h3><table>
{% for k, v in metrics %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
{% for t in metric_tables %}<table style="margin-top:10px"><tr><th>{{ t.name }}</th>{% for c in t.columns %}<th class="num">{{ c }}</th>{% endfor %}</tr>
{% for r in t.rows %}<tr><td>{{ r[0] }}</td>{% for v in r[1:] %}<td class="num">{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>{% endfor %}
</div>{% endif %}
{% if timing %}<div><h3 style="margin-bottom:6px">Timing</h3><table>
{% for k, v in timing %}<tr><th>{{ k }}</th><td class="num">{{ v }}</td></tr>{% endfor %}</table></div>{% endif %}
</div>
</section>

<section id="map"><h2>Map of all kept galaxies (2-D UMAP)</h2>
{% if map_src %}<img class="fig" src="{{ map_src }}" alt="2-D UMAP map of the kept galaxies">
{% else %}<p class="missing">No 2-D map: the run was searched with --no-2d.</p>{% endif %}
<div class="caption">Every kept galaxy is binned onto the image pixels (datashader): unclustered galaxies as a grey
density, cluster members in their cluster's colour, each cluster labelled by its number at its median position.
The map uses a 2-D UMAP made only for this picture; clusters were found in 5-D.</div>
</section>

<section id="figure"><h2>Example clusters</h2>
{% if montage_src %}<img class="fig" src="{{ montage_src }}" alt="montage of example clusters">
<div class="caption">Each row shows the most confident members of one cluster:
{% for m in montage_rows %}<b>{{ m.letter }}</b> = cluster {{ m.cluster }}{% if not loop.last %}, {% endif %}{% endfor %}
(the {{ montage_rows|length }} most persistent clusters).</div>{% else %}<p>No clusters to show.</p>{% endif %}
</section>

<section id="tree"><h2>Condensed tree</h2>
{% if tree_src %}<img class="fig" src="{{ tree_src }}" alt="HDBSCAN condensed tree">
<div class="caption">HDBSCAN's condensed tree (width: log number of galaxies in a branch; λ = 1/distance grows
downwards). Ellipses mark the leaf clusters reported here, labelled by cluster number.</div>
{% else %}<p>{{ tree_missing }}</p>{% endif %}
</section>

<section id="clusters"><h2>Clusters</h2>
<table><tr><th>cluster</th><th class="num">size</th><th class="num">mean prob.</th><th class="num">persistence</th>
<th>checks</th><th>sets it apart (cluster vs. all kept)</th><th>members</th></tr>
{% for c in clusters %}<tr><td><span class="swatch" style="background:{{ c.color }}"></span><a href="#cluster-{{ c.cluster }}">{{ c.cluster }}{% if c.letter %} ({{ c.letter }}){% endif %}</a></td>
<td class="num">{{ "{:,}".format(c.size) }}</td><td class="num">{{ "%.2f"|format(c.mean_probability) }}</td>
<td class="num">{{ c.persistence_text }}</td><td class="checks">{{ c.checks_text }}</td><td>{{ c.morphology_text }}</td>
<td><a class="dl" href="{{ c.downloads.csv }}">CSV</a><a class="dl" href="{{ c.downloads.fits }}">FITS</a></td></tr>
{% endfor %}</table>
</section>

{% for c in clusters %}
<section class="cluster" id="cluster-{{ c.cluster }}" data-cluster="{{ c.cluster }}" data-size="{{ c.size }}">
<div class="cluster-head"><h3><span class="swatch" style="background:{{ c.color }}"></span>Cluster {{ c.cluster }}{% if c.letter %} &middot; {{ c.letter }}{% endif %}</h3>
<span class="facts">{{ "{:,}".format(c.size) }} galaxies &middot; mean membership probability {{ "%.2f"|format(c.mean_probability) }}
&middot; persistence {{ c.persistence_text }}{% if c.checks_text %} &middot; <b class="checks">{{ c.checks_text }}</b>{% endif %} &middot; showing the {{ c.tiles|length }} most confident
{%- if c.n_unreadable %} &middot; {{ c.n_unreadable }} image(s) unreadable{% endif %}</span></div>
<div class="cluster-body"><div>
<div class="morph">{% if c.morphology %}Predicted morphology that sets it apart (cluster mean vs. all kept galaxies):
{% for a in c.morphology %}<b>{{ a.answer }}</b> {{ "%.2f"|format(a.cluster) }} vs {{ "%.2f"|format(a.sample) }}{% if not loop.last %}; {% endif %}{% endfor %}
{% else %}{{ c.morphology_text }}{% endif %}</div>
<div class="gallery">{% for t in c.tiles %}<div class="tile{% if not t.ok %} missing{% endif %}" title="{{ t.id_str }}{% if t.reason %}: {{ t.reason }}{% endif %}">
<img loading="lazy" src="{{ t.src }}" width="{{ tile_px }}" height="{{ tile_px }}" alt="{{ t.id_str }}"><div class="id">{{ t.id_str }}</div><div class="p">p = {{ "%.2f"|format(t.probability) }}</div>
{%- if t.sky_url %}<div class="sky"><a href="{{ t.sky_url }}" target="_blank" rel="noopener" title="open {{ t.id_str }} in the Legacy Surveys viewer ({{ sky_layer }})">{{ t.sky_text }}</a></div>{% endif %}</div>
{% endfor %}</div></div>
<div class="side">{% if c.tree_src %}<img loading="lazy" src="{{ c.tree_src }}" alt="place of cluster {{ c.cluster }} in the condensed tree">{% endif %}
<div class="tree-text">Condensed tree: {{ c.tree_text }}</div>
<div style="margin-top:8px">Members: <a class="dl" href="{{ c.downloads.csv }}">CSV</a><a class="dl" href="{{ c.downloads.fits }}">FITS</a></div></div>
</div></section>
{% endfor %}
{% if merges is not none %}{% include "merges.html" %}{% endif %}

<section id="downloads"><h2>Downloads</h2>
<p><a href="{{ clusters_parquet }}">clusters.parquet</a>: every input galaxy with its cluster (-1 = none),
membership probability, pre-filter flag and UMAP coordinates.</p>
<p>Members of each cluster, most confident first:
{% for c in clusters %}<span style="white-space:nowrap">{{ c.cluster }}: <a href="{{ c.downloads.csv }}">CSV</a> <a href="{{ c.downloads.fits }}">FITS</a></span>{% if not loop.last %} &middot; {% endif %}{% endfor %}</p>
</section>
<div class="caption">Made by raregal {{ version }}. This folder is self-contained: it needs no network to view.
{%- if has_sky %} Only the coordinates under each gallery image go online, when clicked: they open the Legacy Surveys
viewer at the galaxy (RA, Dec in degrees, ICRS).{% endif %}</div>
</main></body></html>
"""


def render_page(**context) -> str:
    """Render the report page; every inserted string is HTML-escaped."""
    from raregal.views.report.merges import SECTION  # the merge-suggestions section (raregal.discovery.checks.merge's pairs)

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             loader=jinja2.DictLoader({"merges.html": SECTION}))
    return env.from_string(PAGE).render(css=CSS, **context)
