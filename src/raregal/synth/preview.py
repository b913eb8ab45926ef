"""A contact sheet of a synthetic survey: examples of every class, for a person to check by eye."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from raregal.atomic import atomic_path
from raregal.synth.classes import BULK, CLASSES


def write_preview(catalog: pd.DataFrame, image_root, path, per_class: int = 8, bulk_rows: int = 3,
                  seed: int = 0) -> Path:
    """Write a PNG contact sheet: one row of up to ``per_class`` cutouts per class present in
    ``catalog`` (``bulk_rows`` rows for the bulk, one sub-type mix), labelled with the class
    name and its count. ``file_loc`` is read relative to ``image_root``. Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from PIL import Image

    from raregal.images.decode import preview_rgb

    rng = np.random.default_rng(seed)
    rows: list[tuple[str, pd.DataFrame]] = []
    for cls in [c for c in CLASSES if c in set(catalog["true_class"])]:
        members = catalog[catalog["true_class"] == cls]
        if cls == BULK:
            take = members.iloc[rng.permutation(len(members))[: per_class * bulk_rows]]
            if "subtype" in take:
                take = take.sort_values("subtype", kind="stable")
            for r in range(0, len(take), per_class):
                label = f"bulk ({len(members)})" if r == 0 else ""
                rows.append((label, take.iloc[r:r + per_class]))
        else:
            take = members.iloc[rng.permutation(len(members))[:per_class]]
            rows.append((f"{cls} ({len(members)})", take))

    fig, axes = plt.subplots(len(rows), per_class, figsize=(1.3 * per_class + 1.6, 1.3 * len(rows)),
                             squeeze=False, gridspec_kw=dict(wspace=0.03, hspace=0.03))
    fig.patch.set_facecolor("white")
    for r, (label, take) in enumerate(rows):
        for c in range(per_class):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(take):
                row = take.iloc[c]
                with Image.open(Path(image_root) / row["file_loc"]) as src:
                    img = np.asarray(preview_rgb(src, row["file_loc"]))
                ax.imshow(img, interpolation="lanczos")
                sub = row.get("subtype", "")  # the bulk sub-type, or the galaxy under an artifact
                if sub and sub != row["true_class"]:
                    ax.set_title(str(sub), fontsize=6, pad=1.5)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.subplots_adjust(left=0.17, right=0.99, top=0.99, bottom=0.01)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return Path(path)
