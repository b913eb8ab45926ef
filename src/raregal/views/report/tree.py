"""The condensed tree: hdbscan's icicle plot with raregal's clusters marked, and facts per cluster.

The drawing itself is hdbscan's :class:`hdbscan.plots.CondensedTree` (bar width = log number of
galaxies still in a branch, λ = 1/distance growing downwards). raregal adds a labelled ellipse
around each cluster's node (the node ids come from ``summary.json``, so clusters chosen by any
backend are marked) and, per cluster, a copy with only that cluster highlighted.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from raregal.atomic import atomic_path

_FIELDS = [("parent", np.intp), ("child", np.intp), ("lambda_val", np.float64), ("child_size", np.intp)]


def as_record_array(tree: pd.DataFrame) -> np.ndarray:
    """The condensed tree as the structured array hdbscan's plotting code takes.

    Infinite λ (exact duplicate points) are set to 1.1 × the largest finite λ so bars can be drawn.
    """
    lam = tree["lambda_val"].to_numpy(np.float64)
    finite = np.isfinite(lam)
    if not finite.all():
        lam = np.where(finite, lam, (lam[finite].max() if finite.any() else 1.0) * 1.1)
    out = np.empty(len(tree), dtype=_FIELDS)
    out["parent"], out["child"] = tree["parent"].to_numpy(), tree["child"].to_numpy()
    out["lambda_val"], out["child_size"] = lam, tree["child_size"].to_numpy()
    return out


def node_facts(tree: pd.DataFrame, node: int) -> dict:
    """Where ``node`` sits in the condensed tree.

    Returns ``{"node", "parent", "birth_lambda", "death_lambda", "depth", "size_at_birth",
    "siblings": [(node, size), ...]}``; λ in 1/(UMAP distance). Empty dict for unknown nodes.
    """
    branch = tree[tree.child_size > 1]
    row = branch[branch.child == node]
    if row.empty:
        if node not in set(tree.parent):
            return {}
        parent, birth, size = None, 0.0, int(tree.child_size[tree.parent == node].sum())
    else:
        parent, birth, size = int(row.parent.iloc[0]), float(row.lambda_val.iloc[0]), int(row.child_size.iloc[0])
    depth, up = 0, parent
    parents = dict(zip(branch.child, branch.parent))
    while up is not None:
        depth += 1
        up = parents.get(up)
    lam = tree.lambda_val[tree.parent == node]
    siblings = [] if parent is None else [
        (int(c), int(s)) for c, s in zip(branch.child[branch.parent == parent], branch.child_size[branch.parent == parent])
        if c != node]
    return {"node": int(node), "parent": parent, "birth_lambda": birth,
            "death_lambda": float(lam[np.isfinite(lam)].max()) if np.isfinite(lam).any() else birth,
            "depth": depth, "size_at_birth": size, "siblings": siblings}


def describe_node(facts: dict) -> str:
    """One sentence about a node's place in the tree (from :func:`node_facts`)."""
    if not facts:
        return "not found in the condensed tree"
    if facts["parent"] is None:
        return f"node {facts['node']} is the root of the tree"
    sib = ", ".join(f"node {c} ({s:,} galaxies)" for c, s in facts["siblings"]) or "none"
    return (f"node {facts['node']}, {facts['depth']} split(s) below the root: splits from node "
            f"{facts['parent']} at λ = {facts['birth_lambda']:.3g} with {facts['size_at_birth']:,} galaxies "
            f"and lasts until λ = {facts['death_lambda']:.3g}; sibling branch: {sib}")


class TreePlot:
    """Draw the condensed tree once; save it whole and with one cluster highlighted at a time.

    Parameters
    ----------
    tree : condensed tree frame (parent, child, lambda_val, child_size).
    nodes : {cluster id: tree node id} of the clusters to mark.
    colors : {cluster id: colour}; names : {cluster id: label text}.
    """

    def __init__(self, tree: pd.DataFrame, nodes: dict[int, int], colors: dict[int, str],
                 names: dict[int, str] | None = None, width_in: float | None = None, height_in: float = 5.0):
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from hdbscan.plots import CondensedTree
        from matplotlib.patches import Rectangle

        self._plt = plt
        ct = CondensedTree(as_record_array(tree), labels=None)
        data = ct.get_plot_data(log_size=True)  # ~10 s at 632k points (a Python loop over all rows)
        ct.get_plot_data = lambda **_: data  # plot() would compute it again; hand it the same result
        n_leaves = max(1, len(nodes))
        width_in = width_in or float(np.clip(4 + 0.18 * n_leaves, 8, 22))
        self.fig, self.ax = plt.subplots(figsize=(width_in, height_in), dpi=100)
        ct.plot(axis=self.ax, log_size=True, cmap="viridis", colorbar=True)
        self.ax.set_ylabel("λ = 1 / distance")
        self.bounds = {}
        tops = np.asarray(data["bar_tops"]) + np.asarray(data["bar_bottoms"])
        span = float(np.nanmax(tops)) if len(tops) else 1.0
        for k, node in nodes.items():
            b = data["cluster_bounds"].get(int(node))
            if b is None:
                continue
            left, right, bottom, top = b
            cx, cy = (left + right) / 2, (bottom + top) / 2
            w, h = max(right - left, 1e-9), max(top - bottom, 0.04 * span)
            self.bounds[k] = (cx, cy, w, h)
            self.ax.add_patch(Rectangle((cx - 0.6 * w, bottom - 0.02 * span), 1.2 * w, h + 0.04 * span,
                                        facecolor="none", edgecolor=colors.get(k, "red"), linewidth=1.5))
            if len(nodes) <= 80:  # beyond that the labels only overlap; the per-cluster copies show each
                self.ax.annotate((names or {}).get(k, str(k)), (cx, bottom - 0.02 * span), xytext=(0, 2),
                                 textcoords="offset points", ha="center", va="bottom", fontsize=8,
                                 color=colors.get(k, "red"), fontweight="bold")
        self.fig.tight_layout()
        self._span = span
        self._raster = None

    def save(self, path: str | os.PathLike, highlight: int | None = None, width: int | None = None) -> Path:
        """Write the plot as PNG, optionally with cluster ``highlight`` marked by a thick red box.

        The figure is drawn once (a big tree has thousands of bars, ~4 s to draw at 632k points);
        each highlighted copy is that raster with a box painted on by Pillow, then shrunk to
        ``width`` pixels. Returns ``path``.
        """
        from PIL import Image, ImageDraw

        if self._raster is None:
            self.fig.canvas.draw()
            self._raster = Image.fromarray(np.asarray(self.fig.canvas.buffer_rgba())[..., :3].copy())
        im = self._raster
        if highlight is not None and highlight in self.bounds:
            cx, cy, w, h = self.bounds[highlight]
            (x0, y0), (x1, y1) = self.ax.transData.transform([(cx - 0.6 * w, cy - 0.5 * h - 0.03 * self._span),
                                                              (cx + 0.6 * w, cy + 0.5 * h + 0.03 * self._span)])
            H = im.height  # display coordinates run bottom-up, image rows top-down
            box = (min(x0, x1) - 6, H - max(y0, y1) - 6, max(x0, x1) + 6, H - min(y0, y1) + 6)
            im = im.copy()
            overlay = Image.new("RGBA", im.size, (0, 0, 0, 0))
            ImageDraw.Draw(overlay).rectangle(box, fill=(255, 0, 0, 40), outline=(220, 0, 0, 255), width=6)
            im = Image.alpha_composite(im.convert("RGBA"), overlay).convert("RGB")
        if width and im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)
        with atomic_path(path) as tmp:
            im.save(tmp, format="PNG")
        return Path(path)

    def close(self):
        self._plt.close(self.fig)
