"""The PCA analysis behind the bottleneck: how many dimensions does the representation really use?

Fit a principal component analysis (scikit-learn) to a representation table and report the
cumulative explained variance: the number of components needed for 90, 95 and 99% of the
variance, and the curve as a PNG. The paper uses this to justify squeezing Zoobot's 1280-d
(EfficientNet-B0) representation into a 128-d bottleneck.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from raregal.errors import InputError

log = logging.getLogger("raregal")

THRESHOLDS = (0.90, 0.95, 0.99)


def explained_variance(X: np.ndarray, max_rows: int | None = None, seed: int = 0) -> dict:
    """PCA of ``X`` (N, D): explained-variance ratios and components needed per threshold.

    ``max_rows`` fits on a seeded random subset of rows (the curve barely changes beyond ~10^5).
    Rows with NaN/inf are dropped (counted). Returns ``{"n_rows", "n_dropped_nonfinite", "dim",
    "explained_variance_ratio": [...] (min(N, D) values, descending), "cumulative": [...],
    "components_for": {"0.90": k, "0.95": k, "0.99": k}}``.
    """
    from sklearn.decomposition import PCA

    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise InputError(f"expected a 2-D representation (rows, features), got shape {X.shape}")
    finite = np.isfinite(X).all(axis=1)
    dropped = int((~finite).sum())
    X = X[finite]
    if max_rows is not None and len(X) > max_rows:
        X = X[np.sort(np.random.default_rng(seed).choice(len(X), max_rows, replace=False))]
    if len(X) < 2 or X.shape[1] < 1:
        raise InputError(f"PCA needs at least 2 finite rows and 1 feature; got {X.shape}")
    pca = PCA(svd_solver="full").fit(X)
    ratio = pca.explained_variance_ratio_
    cumulative = np.cumsum(ratio)
    components = {f"{t:.2f}": int(min(np.searchsorted(cumulative, t - 1e-12) + 1, len(ratio))) for t in THRESHOLDS}
    return {"n_rows": int(len(X)), "n_dropped_nonfinite": dropped, "dim": int(X.shape[1]),
            "explained_variance_ratio": ratio.tolist(), "cumulative": cumulative.tolist(),
            "components_for": components}


def plot_curve(result: dict, path: str | os.PathLike, title: str = "") -> Path:
    """Write the cumulative explained-variance curve (with the 90/95/99% marks) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from raregal.atomic import atomic_path

    cumulative = np.asarray(result["cumulative"])
    k = np.arange(1, len(cumulative) + 1)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(k, cumulative, color="k", lw=1.5)
    for (t, n), color in zip(result["components_for"].items(), ("tab:blue", "tab:orange", "tab:red")):
        ax.axhline(float(t), color=color, lw=0.8, ls="--")
        ax.axvline(n, color=color, lw=0.8, ls=":", label=f"{float(t):.0%}: {n} components")
    ax.set_xscale("log")
    ax.set_xlabel("number of principal components")
    ax.set_ylabel("cumulative explained variance")
    ax.set_ylim(0, 1.01)
    ax.set_title(title or f"PCA of {result['dim']}-d representation ({result['n_rows']} galaxies)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return Path(path)


def pca_report(reps: str | os.PathLike, out_dir: str | os.PathLike, features: str | None = None,
               max_rows: int | None = None, seed: int = 0) -> dict:
    """Run :func:`explained_variance` on a representation table and write ``pca.json`` and ``explained_variance.png``."""
    from raregal.atomic import write_json
    from raregal.inputs.tables import feature_matrix, read_table
    from raregal.runs import folder

    out_dir = folder.check_output_folder(out_dir, "pca", overwrite=True, inputs=(reps,), flag="out_dir")
    X = feature_matrix(read_table(reps), features)
    result = explained_variance(X, max_rows=max_rows, seed=seed)
    result["input"] = str(Path(reps).resolve())
    folder.mark(out_dir, "pca", "raregal pca")
    plot_curve(result, out_dir / "explained_variance.png")
    write_json(out_dir / "pca.json", result)
    log.info("PCA of %d x %d: %s components for 90/95/99%% of the variance -> %s", result["n_rows"], result["dim"],
             "/".join(str(v) for v in result["components_for"].values()), out_dir)
    return result
