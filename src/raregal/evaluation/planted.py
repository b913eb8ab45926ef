"""Datasets for trying raregal without images: seeded representation tables with planted rare groups.

:func:`make_planted` is to the rare-class search what scikit-learn's ``make_blobs`` is to a
clusterer (the image survey with planted galaxy classes is :func:`raregal.synth.make_survey`).

A stand-in for an embedded survey when no images are needed (tests, benchmarks, the search
on its own): a smooth, broad bulk plus a few small, dense groups (0.1-1% each) placed in the
bulk's outskirts, in a D-dimensional representation space. The table has the columns
``raregal embed`` writes: ``id_str``, ``feat_0..feat_{D-1}``, the three pre-filter
fractions, and ``true_class`` (``bulk`` or ``planted_<k>``).

The bulk also carries the galaxies the pre-filter should drop: smooth (``smooth >= 0.5``),
edge-on and artifact galaxies, in the proportions given. One optional planted group is an
*artifact* class (``artifact >= 0.3``): found only with ``keep_artifacts``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raregal.inputs.gz_trees import ARTIFACT_FRACTION, EDGE_ON_FRACTION, SMOOTH_FRACTION


def make_planted(n: int = 20_000, dim: int = 128, group_fractions=(0.002, 0.004, 0.006, 0.01),
                 artifact_group_fraction: float = 0.0, latent_dim: int = 8,
                 group_spread=0.12, noise: float = 0.02,
                 smooth_fraction: float = 0.4, edge_on_fraction: float = 0.1,
                 artifact_fraction: float = 0.02, seed: int = 0) -> pd.DataFrame:
    """Make a representation table of ``n`` rows.

    Parameters
    ----------
    n : number of galaxies (rows).
    dim : representation width D.
    group_fractions : fraction of rows in each planted group (each gets at least 5 rows).
    artifact_group_fraction : size of an extra planted group the model calls artifacts (0: none).
    latent_dim : the bulk is a standard normal in this many dimensions, rotated into D.
    group_spread : standard deviation of each group, in units of the bulk's: one number for all,
        or one per group (groups of mixed tightness; the artifact group takes the last).
    noise : isotropic noise added in all D dimensions.
    smooth_fraction, edge_on_fraction, artifact_fraction : fractions of the bulk the pre-filter
        removes (disjoint subsets).
    seed : everything follows from it.

    Returns
    -------
    DataFrame with ``id_str``, ``true_class``, ``feat_*`` (float32) and the pre-filter fractions.
    """
    rng = np.random.default_rng(seed)
    sizes = [max(5, int(round(f * n))) for f in group_fractions]
    if artifact_group_fraction > 0:
        sizes.append(max(5, int(round(artifact_group_fraction * n))))
    n_bulk = n - sum(sizes)
    if n_bulk < n // 2:
        raise ValueError("planted groups take more than half of the rows")
    spreads = np.broadcast_to(np.asarray(group_spread, dtype=float), (len(sizes),)) if np.ndim(group_spread) == 0 \
        else np.asarray(group_spread, dtype=float)
    if spreads.shape != (len(sizes),) or not np.all(spreads > 0):
        raise ValueError(f"group_spread must be one positive number or {len(sizes)} of them, got {group_spread!r}")
    latent = [rng.standard_normal((n_bulk, latent_dim))]
    classes = ["bulk"] * n_bulk
    for k, size in enumerate(sizes):
        direction = rng.standard_normal(latent_dim)
        direction /= np.linalg.norm(direction)
        centre = direction * rng.uniform(2.5, 3.5)  # the bulk's outskirts, not outside it
        latent.append(centre + spreads[k] * rng.standard_normal((size, latent_dim)))
        is_artifact = artifact_group_fraction > 0 and k == len(sizes) - 1
        classes += ["planted_artifact" if is_artifact else f"planted_{k}"] * size
    latent = np.concatenate(latent)
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, latent_dim)))
    X = latent @ rotation.T + noise * rng.standard_normal((n, dim))

    # predicted fractions: planted groups are featured, face-on, clean (except the artifact group)
    smooth = rng.uniform(0.0, 0.45, n)
    edge_on = rng.uniform(0.0, 0.25, n)
    artifact = rng.uniform(0.0, 0.2, n)
    roles = rng.choice(4, size=n_bulk, p=[1 - smooth_fraction - edge_on_fraction - artifact_fraction,
                                          smooth_fraction, edge_on_fraction, artifact_fraction])
    smooth[:n_bulk][roles == 1] = rng.uniform(0.5, 1.0, (roles == 1).sum())
    edge_on[:n_bulk][roles == 2] = rng.uniform(0.3, 1.0, (roles == 2).sum())
    artifact[:n_bulk][roles == 3] = rng.uniform(0.3, 1.0, (roles == 3).sum())
    classes = np.array(classes, dtype=object)
    artifact[classes == "planted_artifact"] = rng.uniform(0.5, 1.0, (classes == "planted_artifact").sum())
    edge_on[smooth >= 0.5] = np.nan  # not asked of smooth galaxies, as Zoobot writes it

    order = rng.permutation(n)  # no structure in the row order
    frame = pd.DataFrame(X[order].astype(np.float32), columns=[f"feat_{i}" for i in range(dim)])
    frame.insert(0, "true_class", classes[order])
    frame.insert(0, "id_str", [f"G{i:07d}" for i in range(n)])
    frame[SMOOTH_FRACTION] = smooth[order].astype(np.float32)
    frame[EDGE_ON_FRACTION] = edge_on[order].astype(np.float32)
    frame[ARTIFACT_FRACTION] = artifact[order].astype(np.float32)
    return frame
