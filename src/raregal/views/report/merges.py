"""The report's merge-suggestions section: each proposed pair, its evidence in words, both galleries side by side.

The pairs come from ``summary["merge_suggestions"]`` (see :mod:`raregal.discovery.checks.merge`); the tiles are
the clusters' own gallery tiles, so nothing new is read. Nothing is merged: the section asks a
person to judge.
"""

from __future__ import annotations

import math

#: Tiles shown per cluster of a pair.
N_TILES = 8

SECTION = """
<section id="merges"><h2>Merge suggestions ({{ merges|length }})</h2>
{% if merges %}<div class="caption" style="margin-bottom:10px">Pairs of clusters that may be one class split in two
by leaf clustering: close relatives in the condensed tree and/or close centroids in representation space. Nothing has
been merged; compare the galleries and decide.</div>
{% for m in merges %}<div class="merge-pair" data-a="{{ m.a }}" data-b="{{ m.b }}" style="margin:14px 0">
<h3><a href="#cluster-{{ m.a }}"><span class="swatch" style="background:{{ m.color_a }}"></span>cluster {{ m.a }}</a>
({{ m.size_a }}) and <a href="#cluster-{{ m.b }}"><span class="swatch" style="background:{{ m.color_b }}"></span>cluster {{ m.b }}</a>
({{ m.size_b }}) <span class="facts">&middot; evidence: {{ m.reason }}</span></h3>
<div class="facts">{{ m.evidence }}</div>
<div style="display:grid; grid-template-columns:1fr 1fr; gap:14px; margin-top:6px">
{% for side in (m.tiles_a, m.tiles_b) %}<div class="gallery">{% for t in side %}<div class="tile{% if not t.ok %} missing{% endif %}" title="{{ t.id_str }}">
<img loading="lazy" src="{{ t.src }}" width="{{ tile_px }}" height="{{ tile_px }}" alt="{{ t.id_str }}"><div class="id">{{ t.id_str }}</div></div>{% endfor %}</div>
{% endfor %}</div></div>
{% endfor %}{% else %}<p>No pair of clusters is close enough in the condensed tree or in representation space to
suggest merging.</p>{% endif %}
</section>
"""


def _num(rec: dict, key: str):
    value = rec.get(key)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def evidence_text(rec: dict) -> str:
    """One merge suggestion's evidence in words."""
    parts = []
    dist = _num(rec, "tree_distance")
    if dist is not None and dist > 0:
        kin = "siblings" if dist == 2 else f"relatives {int(dist)} steps apart"
        text = f"{kin} in the condensed tree"
        ratio = _num(rec, "join_density_ratio")
        if ratio is not None:
            text += f", separating at {100 * ratio:.0f}% of their members' typical density"
        parts.append(text)
    ratio = _num(rec, "centroid_ratio")
    if ratio is not None:
        text = f"centroids {ratio:.2f}× the median distance between clusters"
        sep = _num(rec, "separation")
        if sep is not None:
            text += f" ({sep:.2f}× the sum of their rms radii{'; the clouds overlap' if sep < 1 else ''})"
        parts.append(text)
    return "; ".join(parts)


def merge_pairs(summary: dict, galleries: dict, colors: dict, n_tiles: int = N_TILES) -> list[dict]:
    """Template context for each suggested pair whose clusters have galleries.

    ``galleries``: {cluster: Gallery} from :func:`raregal.views.report.gallery.build_galleries`;
    ``colors``: {cluster: CSS colour}.
    """
    out = []
    for rec in summary.get("merge_suggestions") or []:
        try:
            a, b = int(rec["cluster_a"]), int(rec["cluster_b"])
        except (KeyError, TypeError, ValueError):
            continue
        if a not in galleries or b not in galleries:
            continue
        out.append({"a": a, "b": b, "color_a": colors.get(a, "#888"), "color_b": colors.get(b, "#888"),
                    "size_a": rec.get("size_a", ""), "size_b": rec.get("size_b", ""),
                    "reason": str(rec.get("reason", "")), "evidence": evidence_text(rec),
                    "tiles_a": galleries[a].tiles[:n_tiles], "tiles_b": galleries[b].tiles[:n_tiles]})
    return out
