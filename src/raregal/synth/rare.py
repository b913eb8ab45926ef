"""Planted rare galaxy classes: what a search for the unexpected should find.

Each sampler returns ``(components, info)`` for one member of its class, centred in the cutout,
with sizes, orientations, colours and brightnesses drawn from ranges so the class is a population
rather than one image repeated. The classes (Galaxy Zoo's "rare features" and the paper's finds):

* ``ring``: a collisional or Hoag-like ring of blue clumps around a (often offset) red nucleus;
* ``one_armed_spiral``: a lopsided disk with one dominant, open spiral arm;
* ``clumpy_barred_dwarf``: a low-mass, blue, low-surface-brightness disk with an offset bar and
  irregular, clumpy arms (Magellanic spirals);
* ``tidal_merger``: two galaxies merging, with long tidal tails;
* ``shells_streams``: an elliptical with faint concentric shells and sometimes a stellar stream;
* ``shredded``: a cutout centred on one star-forming knot of a galaxy far larger than the cutout,
  as when a survey pipeline "shreds" a nearby galaxy into many sources.
"""

from __future__ import annotations

import numpy as np

from raregal.synth import galaxies
from raregal.synth.galaxies import info, split_mag


def ring(rng: np.random.Generator) -> tuple[list, dict]:
    """A ring galaxy: a blue, clumpy ring of radius 3.5-9'' and a compact red nucleus."""
    radius = float(rng.uniform(3.5, 9.0))
    width = float(radius * rng.uniform(0.06, 0.12))
    q = float(rng.uniform(0.5, 1.0))
    pa = float(rng.uniform(0, 180))
    ring_mag = float(rng.uniform(15.8, 17.3) + 1.5 * np.log10(radius / 6.0))
    g_r = float(rng.normal(0.38, 0.08))
    asym, asym_phase = float(rng.uniform(0.0, 0.6)), float(rng.uniform(0, 2 * np.pi))
    # collisional rings have their nucleus off centre; Hoag-like ones do not
    off = float(rng.uniform(0.0, 0.25) * radius) if rng.random() < 0.6 else 0.0
    ang = rng.uniform(0, 2 * np.pi)
    nx, ny = float(off * np.cos(ang)), float(off * np.sin(ang))
    shape = dict(kind="ring", x=0.0, y=0.0, pa=pa, q=q, radius=radius, width=width, asym=asym,
                 asym_phase=asym_phase)
    clump_frac = float(rng.uniform(0.2, 0.45))
    comps = [dict(shape, mag_r=split_mag(ring_mag, 1 - clump_frac), g_r=g_r, r_z=float(rng.normal(0.25, 0.05))),
             dict(kind="clumps", shape=shape, n=int(rng.integers(8, 30)), sigma=float(rng.uniform(0.25, 0.4)),
                  seed=int(rng.integers(2**31)), mag_r=split_mag(ring_mag, clump_frac),
                  g_r=float(rng.normal(0.2, 0.06)), r_z=float(rng.normal(0.1, 0.05)))]
    nuc_mag = float(ring_mag + rng.uniform(-0.7, 1.2))
    nuc_r50 = float(rng.uniform(0.6, 1.6))
    comps.append(dict(kind="sersic", n=float(rng.uniform(1.5, 4.0)), r50=nuc_r50, q=float(rng.uniform(0.6, 1.0)),
                      pa=float(rng.uniform(0, 180)), x=nx, y=ny, mag_r=nuc_mag,
                      g_r=float(rng.normal(0.72, 0.06)), r_z=float(rng.normal(0.42, 0.05))))
    if rng.random() < 0.4:  # a faint disk filling the ring
        comps.append(dict(kind="sersic", n=1.0, r50=radius * 0.6, q=q, pa=pa, x=0.0, y=0.0,
                          mag_r=float(ring_mag + rng.uniform(0.8, 1.8)), g_r=0.55, r_z=0.35))
    total = -2.5 * np.log10(10 ** (-0.4 * ring_mag) + 10 ** (-0.4 * nuc_mag))
    return comps, info(subtype="ring", mag_r=float(total), r50_arcsec=radius, axis_ratio=q, pa_deg=pa,
                       bulge_frac=float(10 ** (-0.4 * (nuc_mag - total))), g_r=g_r, r_z=0.25,
                       n_knots=comps[1]["n"], featured=0.85, disturbance=1)


def one_armed_spiral(rng: np.random.Generator) -> tuple[list, dict]:
    """A spiral with a single dominant, open arm winding 0.6-1 turn, dotted with clumps."""
    comps, inf = galaxies.disk_galaxy(
        rng, r50=float(np.clip(rng.lognormal(np.log(4.5), 0.25), 2.5, 7.5)), q=float(rng.uniform(0.5, 1.0)),
        n_arms=1, pitch=float(rng.uniform(18.0, 32.0)), bar=int(rng.choice([0, 1], p=[0.7, 0.3])),
        bulge_frac=float(rng.uniform(0.02, 0.3)), arm_frac=float(rng.uniform(0.5, 0.7)),
        knot_frac=float(rng.uniform(0.05, 0.15)), arm_sharpness=float(rng.uniform(5.0, 12.0)),
        wobble=float(rng.uniform(0.0, 0.3)), subtype="one_armed_spiral")
    return comps, inf


def clumpy_barred_dwarf(rng: np.random.Generator) -> tuple[list, dict]:
    """A Magellanic spiral: small, blue, faint disk; an offset bar; one or two ragged, clumpy arms."""
    n_arms = int(rng.choice([1, 2], p=[0.4, 0.6]))
    comps, inf = galaxies.disk_galaxy(
        rng, r50=float(rng.uniform(2.5, 5.0)), mu_e=float(rng.normal(22.0, 0.35)), q=float(rng.uniform(0.5, 1.0)),
        bulge_frac=0.0, n_arms=n_arms, pitch=float(rng.uniform(25.0, 45.0)), bar=int(rng.choice([1, 2], p=[0.3, 0.7])),
        arm_frac=float(rng.uniform(0.3, 0.5)), knot_frac=float(rng.uniform(0.2, 0.35)),
        n_knots=int(rng.integers(15, 40)), g_r_disk=float(rng.normal(0.35, 0.06)),
        arm_sharpness=float(rng.uniform(3.0, 7.0)), wobble=float(rng.uniform(0.4, 0.9)),
        arm_lengths=list(rng.uniform(0.4, 1.0, n_arms)), arm_amplitudes=list(rng.uniform(0.4, 1.0, n_arms)),
        subtype="clumpy_barred_dwarf")
    # the bar of a Magellanic spiral sits off the disk's centre
    shift = rng.uniform(0.1, 0.35) * inf["r50_arcsec"]
    ang = rng.uniform(0, 2 * np.pi)
    for c in comps:
        if c["kind"] == "sersic" and c.get("n") == 0.5:
            c["x"], c["y"] = float(shift * np.cos(ang)), float(shift * np.sin(ang))
            c["g_r"], c["r_z"] = float(rng.normal(0.45, 0.05)), float(rng.normal(0.3, 0.04))
    inf["n_arms"] = -1  # ragged arms: volunteers can't count them
    return comps, inf


def tidal_merger(rng: np.random.Generator) -> tuple[list, dict]:
    """Two galaxies 3-8'' apart with long, curving tidal tails pointing away from each other."""
    sep = float(rng.uniform(3.0, 8.0))
    axis = float(rng.uniform(0, 2 * np.pi))
    sense = float(rng.choice([-1.0, 1.0]))
    comps, mags = [], []
    ratio = float(rng.uniform(0.0, 1.2))  # magnitude difference of the pair
    for k in range(2):
        side = axis + np.pi * k
        x, y = float(0.5 * sep * np.cos(side)), float(0.5 * sep * np.sin(side))
        r50 = float(rng.uniform(1.6, 3.2))
        mu = float(rng.normal(20.4, 0.3) + (ratio if k else 0.0))
        if rng.random() < 0.3:
            c, inf = galaxies.elliptical(rng, x=x, y=y, r50=r50, mu_e=mu)
        else:
            c, inf = galaxies.disk_galaxy(rng, x=x, y=y, r50=r50, mu_e=mu, n_arms=0, bar=0,
                                          knot_frac=float(rng.uniform(0.0, 0.15)), subtype="merger")
        comps += c
        mags.append(inf["mag_r"])
        tail = dict(kind="arc", x=x, y=y, pa=float(np.rad2deg(side)), q=float(rng.uniform(0.5, 1.0)),
                    r0=float(r50 * rng.uniform(0.9, 1.4)), theta0=float(rng.uniform(-0.3, 0.3)),
                    sweep=float(sense * rng.uniform(1.6, 2.6)), growth=float(rng.uniform(0.5, 0.8)),
                    width0=float(rng.uniform(0.5, 0.8)), width1=float(rng.uniform(0.9, 1.5)),
                    fade=float(rng.uniform(0.5, 0.9)), n_points=60)
        tail_mag = float(inf["mag_r"] + rng.uniform(0.2, 1.0))
        tail_g_r = float(rng.normal(0.45, 0.08))
        comps.append(dict(tail, mag_r=tail_mag, g_r=tail_g_r, r_z=float(rng.normal(0.3, 0.05))))
        if rng.random() < 0.5:
            comps.append(dict(kind="clumps", shape=tail, n=int(rng.integers(4, 14)), sigma=0.3,
                              seed=int(rng.integers(2**31)), mag_r=tail_mag + 1.2, g_r=0.2, r_z=0.1))
    total = float(-2.5 * np.log10(sum(10 ** (-0.4 * m) for m in mags)))
    return comps, info(subtype="tidal_merger", mag_r=total, r50_arcsec=sep, axis_ratio=1.0,
                       pa_deg=float(np.rad2deg(axis) % 180), g_r=0.6, r_z=0.38, featured=0.7, disturbance=3)


def shells_streams(rng: np.random.Generator) -> tuple[list, dict]:
    """An elliptical with 2-4 faint, sharp-edged shells on alternating sides, and in half of
    them a thin stellar stream looping around it."""
    r50 = float(rng.uniform(2.0, 4.0))
    comps, inf = galaxies.elliptical(rng, r50=r50, mu_e=float(rng.normal(20.2, 0.3)),
                                     q=float(rng.uniform(0.65, 1.0)))
    mag = inf["mag_r"]
    n_shells = int(rng.integers(2, 5))
    r1 = float(r50 * rng.uniform(1.5, 2.2))
    radii = [min(r1 * rng.uniform(1.25, 1.5) ** k, 15.0) for k in range(n_shells)]
    comps.append(dict(kind="shells", x=0.0, y=0.0, pa=inf["pa_deg"], q=float(max(inf["axis_ratio"], 0.75)),
                      radii=[float(r) for r in radii], phase=float(rng.uniform(0, 2 * np.pi)),
                      opening=float(rng.uniform(0.7, 1.2)), inner=float(rng.uniform(0.5, 1.2)),
                      edge=float(rng.uniform(0.25, 0.45)), mag_r=float(mag + rng.uniform(1.6, 2.6)),
                      g_r=float(inf["g_r"] - 0.05), r_z=float(inf["r_z"])))
    if rng.random() < 0.5:
        comps.append(dict(kind="arc", x=0.0, y=0.0, pa=float(rng.uniform(0, 360)), q=float(rng.uniform(0.3, 0.9)),
                          r0=float(rng.uniform(5.0, 10.0)), theta0=0.0, sweep=float(rng.uniform(2.0, 4.0)),
                          growth=float(rng.uniform(-0.1, 0.1)), width0=0.5, width1=float(rng.uniform(0.5, 1.0)),
                          fade=float(rng.uniform(0.4, 1.0)), n_points=60,
                          mag_r=float(mag + rng.uniform(2.5, 3.5)), g_r=0.7, r_z=0.4))
    inf.update(subtype="shells_streams", featured=0.3, disturbance=int(rng.choice([1, 2])))
    return comps, inf


def shredded(rng: np.random.Generator) -> tuple[list, dict]:
    """A star-forming knot of a nearby spiral 25-50'' across, whose centre lies near or beyond
    the cutout's edge: what a pipeline that splits ("shreds") big galaxies puts in a catalog."""
    dist = float(rng.uniform(7.0, 16.0))
    ang = float(rng.uniform(0, 2 * np.pi))
    cx, cy = float(dist * np.cos(ang)), float(dist * np.sin(ang))
    comps, inf = galaxies.disk_galaxy(
        rng, x=cx, y=cy, r50=float(rng.uniform(12.0, 24.0)), mu_e=float(rng.normal(21.2, 0.3)),
        q=float(rng.uniform(0.5, 1.0)), n_arms=int(rng.choice([2, 3])), pitch=float(rng.uniform(15.0, 30.0)),
        bulge_frac=float(rng.uniform(0.02, 0.15)), bar=0, arm_frac=float(rng.uniform(0.35, 0.55)),
        # clumps along the arms only: RandomKnots over a disk this large would need a huge FFT
        knot_frac=float(rng.uniform(0.06, 0.14)), n_knots=0, n_clumps=int(rng.integers(25, 60)),
        arm_sharpness=float(rng.uniform(5.0, 10.0)), subtype="shredded")
    # the catalogued "source": an HII region at the cutout's centre
    comps.append(dict(kind="sersic", n=1.0, r50=float(rng.uniform(0.3, 0.8)), q=float(rng.uniform(0.6, 1.0)),
                      pa=float(rng.uniform(0, 180)), x=0.0, y=0.0, mag_r=float(rng.uniform(18.0, 19.5)),
                      g_r=float(rng.normal(0.15, 0.08)), r_z=float(rng.normal(0.05, 0.06))))
    inf.update(artifact=0.35, featured=0.6)
    return comps, inf


#: Rare galaxy class -> sampler.
RARE_SAMPLERS = {
    "ring": ring,
    "one_armed_spiral": one_armed_spiral,
    "clumpy_barred_dwarf": clumpy_barred_dwarf,
    "tidal_merger": tidal_merger,
    "shells_streams": shells_streams,
    "shredded": shredded,
}
