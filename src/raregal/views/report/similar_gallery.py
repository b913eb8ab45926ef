"""A picture of a 'find more like these' result: the query galaxies, then the candidates in rank order.

Uses the report's thumbnail reader (JPEG/PNG/FITS, unreadable files become placeholders) and
its montage layout (one labelled row per group of images).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from raregal.inputs.tables import image_sources

#: Images per row, and at most this many candidate rows.
COLS, MAX_ROWS = 8, 6


def write_similar_gallery(result: pd.DataFrame, path: str | os.PathLike, cols: int = COLS,
                          max_rows: int = MAX_ROWS, tile: int = 128) -> tuple[Path, int]:
    """Write a PNG montage of a :func:`raregal.similarity.similar` result.

    The first row shows up to ``cols`` query galaxies (``result.attrs["query_images"]``, else
    ``result.attrs["query_file_loc"]``), the
    next rows the candidates, ``cols`` per row, best first (at most ``max_rows`` rows).
    Returns ``(path, number of unreadable images)``; a missing image shows as a placeholder.
    """
    from raregal.views.report import montage, thumbs

    bad = 0

    def tiles(sources):
        nonlocal bad
        out = []
        for i in range(len(sources)):
            im, why = thumbs.preview_of(sources, i, tile)
            if im is None:
                bad += 1
                im = thumbs.placeholder(tile)
            out.append(im)
        return out

    rows, labels, captions = [], [], []
    query = result.attrs.get("query_images")
    query = image_sources(pd.DataFrame(query)) if query else np.array(result.attrs.get("query_file_loc") or [],
                                                                     dtype=object)
    if len(query):
        rows.append(tiles(query[:cols]))
        labels.append("Q")
        captions.append(f"query\n{len(query)} galaxies")
    sources = image_sources(result)
    for start in range(0, min(len(result), cols * max_rows), cols):
        part = result.iloc[start:start + cols]
        rows.append(tiles(sources[start:start + cols]))
        labels.append(f"#{start + 1}")
        captions.append(f"ranks {start + 1}-{start + len(part)}\n"
                        f"d {part['distance'].min():.3g}-{part['distance'].max():.3g}")
    if not rows:
        rows, labels, captions = [[thumbs.placeholder(tile, "no results")]], [""], ["no candidates"]
    return montage.montage(rows, labels, captions, path, tile=tile), bad
