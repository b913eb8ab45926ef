"""Cluster galleries: pick each cluster's most confident members and write their thumbnails."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from raregal.inputs import sky
from raregal.views.report.thumbs import write_thumbnails

#: Gallery size: at most this many members, most confident first (the issue asks for 16-36).
MAX_TILES = 36


@dataclass
class Tile:
    """One gallery tile: a galaxy and the thumbnail shown for it (relative to the report)."""

    id_str: str
    probability: float
    src: str  # relative path of the thumbnail, or of the placeholder when unreadable
    ok: bool
    reason: str = ""
    sky_text: str = ""  # "150.11917, +2.20583" (degrees), "" when the position is unknown
    sky_url: str | None = None  # the Legacy Surveys viewer at the galaxy's position


@dataclass
class Gallery:
    cluster: int
    tiles: list[Tile] = field(default_factory=list)

    @property
    def n_unreadable(self) -> int:
        return sum(not t.ok for t in self.tiles)


def top_members(clusters: pd.DataFrame, k: int, n: int = MAX_TILES) -> pd.DataFrame:
    """The ``n`` members of cluster ``k`` with the highest membership probability (ties: input order)."""
    members = clusters[clusters["cluster"] == k]
    return members.sort_values("probability", ascending=False, kind="stable").head(n)


def build_galleries(clusters: pd.DataFrame, cluster_ids, report_dir: Path, placeholder_src: str,
                    n: int = MAX_TILES, size: int = 96, progress: bool = True,
                    sky_layer: str = sky.DEFAULT_LAYER) -> dict[int, Gallery]:
    """Write thumbnails ``thumbs/c<k>_<rank>.jpg`` for each cluster's top members.

    ``clusters`` needs ``id_str``, ``cluster``, ``probability`` and where the images are
    (``file_loc``, or ``image_shard``/``image_row``, see :func:`raregal.inputs.tables.image_sources`; may be
    missing: the tile then shows ``placeholder_src``); with ``ra``/``dec`` each tile links to the
    Legacy Surveys viewer (layer ``sky_layer``) at the galaxy. Returns {cluster: Gallery}.
    """
    from raregal.inputs.tables import image_sources

    thumb_dir = report_dir / "thumbs"
    thumb_dir.mkdir(parents=True, exist_ok=True)
    picks, dests, frames = [], [], []
    for k in cluster_ids:
        members = top_members(clusters, k, n)
        frames.append(members)
        for rank, (_, row) in enumerate(members.iterrows()):
            name = f"c{int(k)}_{rank:02d}.jpg"
            picks.append((int(k), row))
            dests.append(thumb_dir / name)
    shown = pd.concat(frames) if frames else clusters.iloc[:0]
    reasons = write_thumbnails(image_sources(shown), dests, size=size, progress=progress and len(dests) > 200)
    galleries = {int(k): Gallery(int(k)) for k in cluster_ids}
    for (k, row), dest, why in zip(picks, dests, reasons):
        ra, dec = row.get(sky.RA), row.get(sky.DEC)
        galleries[k].tiles.append(Tile(id_str=str(row["id_str"]), probability=float(row["probability"]),
                                       src=f"thumbs/{dest.name}" if not why else placeholder_src,
                                       ok=not why, reason=why, sky_text=sky.format_deg(ra, dec),
                                       sky_url=sky.viewer_url(ra, dec, sky_layer)))
    return galleries
