"""Planted artifact classes: ordinary galaxies in images spoiled in one particular way.

Each sampler draws an ordinary (bulk) galaxy and adds one kind of artifact, returning
``(components, info, extra)`` where ``extra`` holds scene-level settings (``missing_band``):

* ``satellite_trail``: a satellite's straight streak across the cutout, in one or two bands
  (it crossed one exposure);
* ``diffraction_spikes``: a bright star in the field with four diffraction spikes;
* ``ghost_ring``: a pupil ghost, a large faint doughnut reflected from a bright star outside the field;
* ``missing_band``: a band with no data (zeros), as at the edges of a survey's footprint.
"""

from __future__ import annotations

import numpy as np

from raregal.synth.bulk import sample_bulk
from raregal.synth.field import bright_star

BAND_CHOICES = ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1])


def satellite_trail(rng: np.random.Generator, half_field: float) -> tuple[list, dict, dict]:
    comps, inf = sample_bulk(rng)
    w = BAND_CHOICES[int(rng.choice(len(BAND_CHOICES), p=[0.3, 0.25, 0.25, 0.1, 0.1]))]
    # flux inside the cutout, scaled to its width so the streak's brightness is per length
    per_arcsec = float(np.exp(rng.uniform(np.log(0.8), np.log(6.0))))  # nanomaggies per arcsec of trail
    flux = per_arcsec * 2 * half_field
    comps.append(dict(kind="line", x=float(rng.uniform(-0.4, 0.4) * half_field),
                      y=float(rng.uniform(-0.4, 0.4) * half_field), angle=float(rng.uniform(0, 180)),
                      width=float(rng.uniform(0.25, 0.4)), gradient=float(rng.uniform(-0.3, 0.3)),
                      mag_r=float(22.5 - 2.5 * np.log10(flux)), g_r=0.0, r_z=0.0, band_weights=w))
    inf.update(artifact=0.65)
    return comps, inf, {}


def diffraction_spikes(rng: np.random.Generator, half_field: float) -> tuple[list, dict, dict]:
    comps, inf = sample_bulk(rng)
    r = float(rng.uniform(0.35, 0.8) * half_field)
    ang = rng.uniform(0, 2 * np.pi)
    x, y = float(r * np.cos(ang)), float(r * np.sin(ang))
    mag = float(rng.uniform(10.0, 12.5))
    star = bright_star(rng, x, y, mag)
    comps += star
    comps.append(dict(kind="spikes", x=x, y=y, angle=float(rng.choice([0.0, 45.0]) + rng.normal(0, 3.0)),
                      length=float(rng.uniform(0.25, 0.6) * half_field), n_spikes=4, width=0.25,
                      mag_r=float(mag + rng.uniform(3.0, 4.5)), g_r=star[0]["g_r"], r_z=star[0]["r_z"]))
    inf.update(artifact=0.55, star_halo=True)
    return comps, inf, {}


def ghost_ring(rng: np.random.Generator, half_field: float) -> tuple[list, dict, dict]:
    comps, inf = sample_bulk(rng)
    radius = float(rng.uniform(0.3, 0.7) * half_field)
    x, y = (float(v) for v in rng.uniform(-0.5, 0.5, 2) * half_field)
    sb = float(rng.uniform(0.35, 0.9))  # surface brightness, nanomaggies / arcsec^2
    area = np.pi * radius**2 * (1 - 0.45**2)
    comps.append(dict(kind="ghost", x=x, y=y, radius=radius, hole=float(rng.uniform(0.35, 0.55)),
                      soft=float(rng.uniform(0.3, 0.8)), mag_r=float(22.5 - 2.5 * np.log10(sb * area)),
                      g_r=float(rng.uniform(-0.6, 0.9)), r_z=float(rng.uniform(-0.4, 0.6))))
    inf.update(artifact=0.5)
    return comps, inf, {}


def missing_band(rng: np.random.Generator, half_field: float) -> tuple[list, dict, dict]:
    comps, inf = sample_bulk(rng)
    band = int(rng.choice(3, p=[0.6, 0.2, 0.2]))
    inf.update(artifact=0.6)
    return comps, inf, {"missing_band": band}


#: Artifact class -> sampler.
ARTIFACT_SAMPLERS = {
    "satellite_trail": satellite_trail,
    "diffraction_spikes": diffraction_spikes,
    "ghost_ring": ghost_ring,
    "missing_band": missing_band,
}
