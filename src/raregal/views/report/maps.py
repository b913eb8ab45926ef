"""The 2-D UMAP map of all kept galaxies, rasterised with datashader.

At survey scale (~632k points) a scatter plot with one marker per galaxy is slow and mostly
overplotting, so the points are binned onto the output pixels by datashader: unclustered
galaxies as a grey density (log scale), clustered galaxies on top in their cluster's colour
(each pixel takes the largest cluster id that falls on it, then spread by a pixel or two so
small clusters stay visible); sparse views get bigger dots (datashader's dynspread). The same raster backs the explorer's overview.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

UNCLUSTERED_GREY = ("#b4b4b4", "#3a3a3a")


def cluster_colors(clusters) -> dict[int, str]:
    """A distinct colour (``#rrggbb``) per cluster id, from colorcet's Glasbey palette."""
    import colorcet

    pal = colorcet.palette["glasbey_category10"]  # hex strings
    return {int(k): pal[i % len(pal)] for i, k in enumerate(sorted(int(c) for c in clusters))}


def _lut(colors: dict[int, str], n: int) -> np.ndarray:
    """uint32 RGBA (little-endian ABGR, as datashader and Bokeh use) per cluster id 0..n-1."""
    lut = np.zeros(n, np.uint32)
    for k, hexcol in colors.items():
        if 0 <= k < n:
            r, g, b = (int(hexcol[i:i + 2], 16) for i in (1, 3, 5))
            lut[k] = (255 << 24) | (b << 16) | (g << 8) | r
    return lut


def data_range(x: np.ndarray, y: np.ndarray, pad: float = 0.04):
    """((xmin, xmax), (ymin, ymax)) of the finite points, padded by ``pad`` of the span."""
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return (0.0, 1.0), (0.0, 1.0)
    out = []
    for v in (x[ok], y[ok]):
        lo, hi = float(v.min()), float(v.max())
        span = hi - lo or 1.0
        out.append((lo - pad * span, hi + pad * span))
    return tuple(out)


def shade(x, y, labels, width: int, height: int, x_range=None, y_range=None,
          colors: dict[int, str] | None = None, spread: int = 1, background: str | None = None) -> np.ndarray:
    """Rasterise points to an RGBA image.

    Parameters
    ----------
    x, y : (N,) map coordinates; NaN rows are ignored.
    labels : (N,) int cluster ids, -1 = unclustered.
    width, height : output size in pixels.
    x_range, y_range : (min, max) shown; default: the data range, padded.
    colors : cluster id -> ``#rrggbb``; default :func:`cluster_colors`.
    spread : pixels by which clustered points are grown (0 = none).
    background : a colour (e.g. "white") to make the image opaque; default transparent.

    Returns
    -------
    (height, width) uint32 array of packed RGBA pixels, row 0 at the *bottom* (y_range[0]),
    ready for Bokeh's ``image_rgba``; transparent where there is no galaxy.
    """
    import datashader as ds
    import datashader.transfer_functions as tf
    import pandas as pd
    import xarray as xr

    from raregal.numba_cache import cache_kernels

    cache_kernels("datashader")

    x, y, labels = np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(labels, np.int64)
    if x_range is None or y_range is None:
        x_range, y_range = data_range(x, y)
    colors = cluster_colors(np.unique(labels[labels >= 0])) if colors is None else colors
    frame = pd.DataFrame({"x": x, "y": y, "code": labels})
    canvas = ds.Canvas(plot_width=int(width), plot_height=int(height),
                       x_range=tuple(x_range), y_range=tuple(y_range))
    grey = canvas.points(frame[frame.code < 0], "x", "y", agg=ds.count())
    # dynspread grows isolated pixels (up to max_px) only where the view is sparse, so a few
    # thousand galaxies stay visible while 632k are not blurred
    img = tf.dynspread(tf.shade(grey, cmap=list(UNCLUSTERED_GREY), how="log", min_alpha=120),
                       threshold=0.5, max_px=2)
    clustered = frame[frame.code >= 0]
    if len(clustered):
        top = canvas.points(clustered.astype({"code": np.float64}), "x", "y", agg=ds.max("code"))
        codes = np.nan_to_num(top.values, nan=-1).astype(np.int64)
        lut = _lut(colors, int(codes.max()) + 1 if codes.max() >= 0 else 1)
        rgba = np.where(codes >= 0, lut[np.clip(codes, 0, None)], 0).astype(np.uint32)
        layer = tf.Image(xr.DataArray(rgba, coords=top.coords, dims=top.dims))
        layer = tf.dynspread(layer, threshold=0.5, max_px=2)
        if spread:
            layer = tf.spread(layer, px=int(spread))
        img = tf.stack(img, layer)
    if background is not None:
        img = tf.set_background(img, background)
    return np.asarray(img.data, dtype=np.uint32)


def label_positions(x, y, labels) -> dict[int, tuple[float, float]]:
    """Median map position of each cluster (where its label is drawn)."""
    x, y, labels = np.asarray(x), np.asarray(y), np.asarray(labels)
    return {int(k): (float(np.median(x[labels == k])), float(np.median(y[labels == k])))
            for k in np.unique(labels[labels >= 0])}


def plot_map(x, y, labels, path: str | os.PathLike, names: dict[int, str] | None = None,
             width: int = 1200, height: int = 900, dpi: int = 100, title: str | None = None) -> Path:
    """Write the map as a PNG: datashader raster with axes, a cluster label at each median.

    ``names`` maps cluster id -> label text (default: the id). Returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.patheffects as pe
    import matplotlib.pyplot as plt

    from raregal.atomic import atomic_path

    x, y, labels = np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(labels, np.int64)
    xr_, yr_ = data_range(x, y)
    colors = cluster_colors(np.unique(labels[labels >= 0]))
    plot_w, plot_h = int(width * 0.86), int(height * 0.86)
    rgba = shade(x, y, labels, plot_w, plot_h, xr_, yr_, colors=colors, spread=1)
    rgb = rgba.view(np.uint8).reshape(plot_h, plot_w, 4)
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = fig.add_axes((0.07, 0.07, 0.9, 0.86))
    ax.imshow(rgb, origin="lower", extent=(*xr_, *yr_), aspect="auto", interpolation="nearest")
    for k, (mx, my) in label_positions(x, y, labels).items():
        ax.annotate((names or {}).get(k, str(k)), (mx, my), xytext=(0, 7), textcoords="offset points",
                    fontsize=9, fontweight="bold", color=colors[k], ha="center", va="bottom",
                    path_effects=[pe.withStroke(linewidth=2.5, foreground="white")])
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    n_kept, n_cl = int(np.isfinite(x).sum()), int((labels >= 0).sum())
    ax.set_title(title or f"{n_kept:,} galaxies; {n_cl:,} in {len(colors)} clusters (colour), "
                 f"unclustered in grey", fontsize=11)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    return Path(path)
