"""What every cutout shares, whatever its galaxy: observing conditions and the rest of the field.

Every class, bulk or rare, gets the same nuisances (seeing and depth that vary from cutout to
cutout, neighbouring stars and galaxies, and now and then a bright star's halo), so that no rare
class can be told from the bulk by its surroundings alone.
"""

from __future__ import annotations

import numpy as np

from raregal.synth.bands import BANDS, DEPTH_5SIGMA, PSF_BETA, PSF_FWHM, sky_sigma

#: Fraction of cutouts with a bright star's halo reaching in from outside the field.
STAR_HALO_RATE = 0.03
#: Mean number of neighbouring sources (stars and small galaxies) per cutout.
MEAN_NEIGHBOURS = 2.0


def conditions(rng: np.random.Generator, pixel_scale: float) -> dict:
    """Seeing and depth of one cutout: per-band Moffat FWHM (arcsec) and sky noise (nmgy/pixel).

    The seeing of the three bands moves together (one factor, log-normal with 12% scatter);
    depths scatter by 0.25 mag per band.
    """
    seeing = float(np.exp(rng.normal(0.0, 0.12)))
    fwhm = [float(PSF_FWHM[b] * seeing * np.exp(rng.normal(0.0, 0.03))) for b in BANDS]
    depth = [float(DEPTH_5SIGMA[b] + rng.normal(0.0, 0.25)) for b in BANDS]
    sigma = [sky_sigma(f, d, pixel_scale) for f, d in zip(fwhm, depth)]
    return {"psf_fwhm": fwhm, "psf_beta": PSF_BETA, "sky_sigma": sigma}


def neighbours(rng: np.random.Generator, half_field: float, n: int | None = None,
               avoid: float = 3.0) -> list[dict]:
    """Unrelated stars and small background galaxies scattered over the field (not within
    ``avoid`` arcsec of the centre). ``half_field`` is half the cutout's width in arcsec."""
    n = int(rng.poisson(MEAN_NEIGHBOURS)) if n is None else n
    comps = []
    for _ in range(n):
        for _try in range(20):
            x, y = rng.uniform(-half_field, half_field, 2)
            if np.hypot(x, y) > avoid:
                break
        if rng.random() < 0.4:  # a star
            g_r, r_z = star_colours(rng)
            comps.append(dict(kind="point", x=float(x), y=float(y), mag_r=float(rng.uniform(17.0, 22.0)),
                              g_r=g_r, r_z=r_z))
        else:  # a small background galaxy
            comps.append(dict(kind="sersic", n=float(rng.choice([1.0, rng.uniform(1.5, 4.0)])),
                              r50=float(rng.uniform(0.3, 1.1)), q=float(rng.uniform(0.3, 1.0)),
                              pa=float(rng.uniform(0, 180)), x=float(x), y=float(y),
                              mag_r=float(rng.uniform(19.0, 22.5)), g_r=float(rng.uniform(0.4, 1.2)),
                              r_z=float(rng.uniform(0.2, 0.8))))
    return comps


def star_colours(rng: np.random.Generator) -> tuple[float, float]:
    """(g-r, r-z) of a random star on the stellar locus (hot blue-white to cool orange)."""
    g_r = float(rng.uniform(0.2, 1.4))
    return g_r, float(max(0.0, 0.75 * (g_r - 0.3) + 0.1 + rng.normal(0.0, 0.05)))


def bright_star(rng: np.random.Generator, x: float, y: float, mag_r: float,
                halo_frac: float | None = None) -> list[dict]:
    """A bright star at (x, y): its core (the PSF) and its extended scattered-light halo."""
    g_r, r_z = star_colours(rng)
    halo_frac = float(rng.uniform(0.05, 0.12)) if halo_frac is None else halo_frac
    return [
        dict(kind="point", x=x, y=y, mag_r=mag_r, g_r=g_r, r_z=r_z),
        dict(kind="halo", x=x, y=y, fwhm=float(rng.uniform(2.5, 5.0)), beta=2.0, trunc=40.0,
             mag_r=float(mag_r - 2.5 * np.log10(halo_frac)), g_r=g_r, r_z=r_z),
    ]


def star_halo(rng: np.random.Generator, half_field: float) -> list[dict]:
    """A bright (r 10.5-13) star just outside or at the edge of the field, whose halo washes over
    part of the cutout: the common, low-level artifact of real cutouts."""
    ang = rng.uniform(0, 2 * np.pi)
    dist = half_field * rng.uniform(1.0, 1.6)
    return bright_star(rng, float(dist * np.cos(ang)), float(dist * np.sin(ang)),
                       float(rng.uniform(10.5, 13.0)), halo_frac=float(rng.uniform(0.1, 0.25)))
