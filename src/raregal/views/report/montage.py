"""A figure like the paper's Fig. 1: several clusters, one row of member images each, labelled A, B, C…"""

from __future__ import annotations

import os
import string
from pathlib import Path

from raregal.atomic import atomic_path


def letters(n: int) -> list[str]:
    """Row labels A..Z, then AA, AB, … for more than 26 rows."""
    abc = string.ascii_uppercase
    return [abc[i] if i < 26 else abc[i // 26 - 1] + abc[i % 26] for i in range(n)]


def _font(size: int):
    from PIL import ImageFont

    try:  # matplotlib ships DejaVu Sans; use it for clean labels
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans:bold"), size)
    except Exception:
        return ImageFont.load_default(size)


def montage(rows: list[list], labels: list[str], captions: list[str], path: str | os.PathLike,
            tile: int = 128, gap: int = 4, label_width: int = 190) -> Path:
    """Write a PNG with one row per cluster.

    Parameters
    ----------
    rows : per row, a list of RGB ``PIL.Image`` tiles (any size; resized to ``tile`` px squares).
    labels : a short bold label per row ("A"); captions : a smaller line under it ("cluster 3, 61 galaxies").
    path : output PNG. Returns it.
    """
    from PIL import Image, ImageDraw

    n_cols = max((len(r) for r in rows), default=1)
    width = label_width + n_cols * (tile + gap) + gap
    height = max(1, len(rows)) * (tile + gap) + gap
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    big, small = _font(int(tile * 0.36)), _font(max(10, int(tile * 0.1)))
    for r, (tiles, label, caption) in enumerate(zip(rows, labels, captions)):
        top = gap + r * (tile + gap)
        draw.text((12, top + tile * 0.12), label, fill=(20, 20, 20), font=big)
        y = top + tile * 0.6
        for line in caption.split("\n"):
            draw.text((12, y), line, fill=(80, 80, 80), font=small)
            y += small.size + 3
        for c, im in enumerate(tiles):
            im = im if im.size == (tile, tile) else im.resize((tile, tile))
            canvas.paste(im, (label_width + gap + c * (tile + gap), top))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)
