"""The bulk of the survey: the ordinary galaxies Galaxy Zoo volunteers see every day.

A mixture of sub-types (:data:`BULK_SUBTYPES`): smooth ellipticals; spirals with 2-4 arms of
every winding, bulges of every size and strong, weak or no bars, with clumpy star formation;
armless (lenticular-like) disks; edge-on disks; and faint, small galaxies. The field around them
(neighbours, a bright star's halo now and then) is added for every class by
:mod:`raregal.synth.field`.
"""

from __future__ import annotations

import numpy as np

from raregal.synth import galaxies

#: Bulk sub-type -> share of the bulk.
BULK_SUBTYPES: dict[str, float] = {
    "elliptical": 0.34,
    "spiral": 0.30,
    "lenticular": 0.08,
    "edge_on": 0.11,
    "faint_small": 0.17,
}


def sample_bulk(rng: np.random.Generator, subtype: str | None = None) -> tuple[list, dict]:
    """Draw one bulk galaxy (centred) -> (components, info). ``subtype`` forces a sub-type."""
    if subtype is None:
        names = list(BULK_SUBTYPES)
        subtype = names[int(rng.choice(len(names), p=np.array(list(BULK_SUBTYPES.values()))))]
    if subtype == "elliptical":
        return galaxies.elliptical(rng)
    if subtype == "spiral":
        return galaxies.disk_galaxy(rng)
    if subtype == "lenticular":
        return galaxies.disk_galaxy(rng, n_arms=0, bulge_frac=float(rng.uniform(0.2, 0.6)),
                                    mu_e=float(rng.normal(20.7, 0.4)), knot_frac=0.0,
                                    g_r_disk=float(rng.normal(0.7, 0.05)), subtype="lenticular")
    if subtype == "edge_on":
        return galaxies.edge_on_disk(rng)
    if subtype == "faint_small":
        return galaxies.faint_small(rng)
    raise ValueError(f"unknown bulk subtype {subtype!r}; known: {', '.join(BULK_SUBTYPES)}")
