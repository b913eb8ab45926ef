"""Building blocks of synthetic galaxies: ellipticals, disks with bulges, bars, arms and clumps.

Each builder takes a NumPy ``Generator`` and physical parameters and returns ``(components,
info)``: the scene components (see :mod:`raregal.synth.render`) and a flat dict of the
generating parameters that also drive the Galaxy Zoo votes (:mod:`raregal.synth.votes`).
Sizes are arcsec, surface brightnesses mag/arcsec^2 (r band), angles degrees.

Sizes and brightnesses are tied as in real galaxies: the magnitude follows from the mean
surface brightness within the half-light radius, ``m = mu_e - 2.5 log10(2 pi r50^2)``.
"""

from __future__ import annotations

import math

import numpy as np

#: Every info key with its default, so every catalog row has every column.
INFO_DEFAULTS: dict = {
    "subtype": "",
    "mag_r": math.nan,
    "r50_arcsec": math.nan,
    "axis_ratio": math.nan,
    "pa_deg": math.nan,
    "sersic_n": math.nan,
    "bulge_frac": math.nan,
    "g_r": math.nan,
    "r_z": math.nan,
    "n_arms": 0,  # 0 none, 1-4, 5 = more than four, -1 = irregular (can't tell)
    "pitch_deg": math.nan,
    "bar": 0,  # 0 none, 1 weak, 2 strong
    "n_knots": 0,
    "edge_on": False,
    "featured": 0.0,  # how clearly the galaxy shows features (0 smooth .. 1 obviously featured)
    "disturbance": 0,  # 0 none, 1 minor, 2 major disturbance, 3 merger
    "artifact": 0.0,  # how much an artifact dominates the image (0 .. 1)
    "n_neighbours": 0,
    "star_halo": False,
}


def mag_from_mu(mu_e: float, r50: float) -> float:
    """Total magnitude of a galaxy with mean surface brightness ``mu_e`` (mag/arcsec^2) inside its
    half-light radius ``r50`` (arcsec)."""
    return float(mu_e - 2.5 * np.log10(2.0 * np.pi * r50**2))


def split_mag(mag: float, frac: float) -> float:
    """Magnitude of the part carrying fraction ``frac`` of the light of a ``mag`` source."""
    return float(mag - 2.5 * np.log10(max(frac, 1e-6)))


def info(**kw) -> dict:
    """An info dict: :data:`INFO_DEFAULTS` updated with ``kw`` (unknown keys are an error)."""
    unknown = set(kw) - set(INFO_DEFAULTS)
    if unknown:
        raise KeyError(f"unknown info keys: {sorted(unknown)}")
    out = dict(INFO_DEFAULTS)
    out.update(kw)
    return out


def elliptical(rng: np.random.Generator, x=0.0, y=0.0, r50=None, mu_e=None, n=None, q=None,
               pa=None, g_r=None, r_z=None) -> tuple[list, dict]:
    """A smooth early-type galaxy: one Sérsic profile (n 2.5-6), red colours."""
    r50 = float(rng.lognormal(np.log(3.0), 0.35)) if r50 is None else r50
    r50 = float(np.clip(r50, 1.0, 6.0))
    mu_e = float(rng.normal(20.4, 0.5)) if mu_e is None else mu_e
    n = float(rng.uniform(2.5, 6.0)) if n is None else n
    q = float(rng.uniform(0.45, 1.0)) if q is None else q
    pa = float(rng.uniform(0, 180)) if pa is None else pa
    g_r = float(rng.normal(0.78, 0.05)) if g_r is None else g_r
    r_z = float(rng.normal(0.45, 0.05)) if r_z is None else r_z
    mag = mag_from_mu(mu_e, r50)
    comp = dict(kind="sersic", n=n, r50=r50, q=q, pa=pa, x=x, y=y, mag_r=mag, g_r=g_r, r_z=r_z)
    return [comp], info(subtype="elliptical", mag_r=mag, r50_arcsec=r50, axis_ratio=q, pa_deg=pa,
                        sersic_n=n, bulge_frac=1.0, g_r=g_r, r_z=r_z, featured=0.05)


def bar_axis(pa_disk: float, q_disk: float, phi_deg: float) -> float:
    """Sky position angle (deg) of a bar lying at azimuth ``phi_deg`` in a disk seen at
    (``pa_disk``, ``q_disk``)."""
    phi = np.deg2rad(phi_deg)
    return float(pa_disk + np.rad2deg(np.arctan2(np.sin(phi) * q_disk, np.cos(phi))))


def _arm_components(rng: np.random.Generator, geometry: dict, *, mag_r: float, g_r: float,
                    clump_mag_r: float | None, n_clumps, sharpness, amplitudes, lengths, wobble) -> tuple[list, int]:
    """The spiral arms of :func:`disk_galaxy` (``geometry``: centre, orientation, pitch, radii) and,
    when ``clump_mag_r`` is given, star-forming clumps along them; returns (components, clumps)."""
    m = geometry["m"]
    arm = dict(kind="arms", **geometry,
               r_out=float(geometry["h"] * rng.uniform(3.2, 4.5)),
               sharpness=float(rng.uniform(8.0, 20.0)) if sharpness is None else sharpness,
               amplitudes=list(rng.uniform(0.75, 1.0, m)) if amplitudes is None else amplitudes,
               lengths=list(rng.uniform(0.75, 1.0, m)) if lengths is None else lengths,
               wobble=float(rng.uniform(0.0, 0.25)) if wobble is None else wobble,
               wobble_freq=float(rng.uniform(1.0, 3.0)), wobble_phase=float(rng.uniform(0, 6.283)),
               mag_r=mag_r, g_r=g_r, r_z=float(rng.normal(0.3, 0.04)))
    if clump_mag_r is None:
        return [arm], 0
    n_c = int(rng.integers(6, 30)) if n_clumps is None else int(n_clumps)
    shape = {k: v for k, v in arm.items() if k not in ("mag_r", "g_r", "r_z")}
    clumps = dict(kind="clumps", shape=shape, n=n_c, sigma=float(rng.uniform(0.1, 0.2)),
                  seed=int(rng.integers(2**31)), mag_r=clump_mag_r,
                  g_r=float(rng.normal(0.2, 0.06)), r_z=float(rng.normal(0.1, 0.05)))
    return [arm, clumps], n_c


def disk_galaxy(rng: np.random.Generator, *, x=0.0, y=0.0, r50=None, mu_e=None, q=None, pa=None,
                bulge_frac=None, n_arms=None, pitch=None, bar=None, arm_frac=None, knot_frac=None,
                n_knots=None, n_clumps=None, g_r_disk=None, arm_sharpness=None, wobble=None, arm_lengths=None,
                arm_amplitudes=None, subtype="spiral") -> tuple[list, dict]:
    """A disk galaxy: exponential disk, Sérsic bulge, optional bar, logarithmic spiral arms
    with star-forming clumps along them, and ``RandomKnots`` clumps over the disk.

    Unset parameters are drawn from ranges that cover what Galaxy Zoo volunteers see.
    ``n_arms = 0`` gives an armless (lenticular-like) disk. Star-forming clumps: ``n_clumps`` along
    the arms and ``n_knots`` (``galsim.RandomKnots``) over the disk share ``knot_frac`` of the disk light.
    """
    r50 = float(np.clip(rng.lognormal(np.log(4.5), 0.3), 2.0, 8.0)) if r50 is None else r50
    mu_e = float(rng.normal(21.0, 0.45)) if mu_e is None else mu_e
    q = float(rng.uniform(0.35, 1.0)) if q is None else q
    pa = float(rng.uniform(0, 180)) if pa is None else pa
    bulge_frac = float(rng.choice([rng.uniform(0.0, 0.08), rng.uniform(0.08, 0.6)], p=[0.3, 0.7])) \
        if bulge_frac is None else bulge_frac
    n_arms = int(rng.choice([2, 3, 4], p=[0.62, 0.23, 0.15])) if n_arms is None else n_arms
    pitch = float(rng.uniform(9.0, 38.0)) if pitch is None else pitch
    bar = int(rng.choice([0, 1, 2], p=[0.55, 0.25, 0.2])) if bar is None else bar
    arm_frac = float(rng.uniform(0.35, 0.6)) if arm_frac is None else arm_frac
    knot_frac = float(rng.uniform(0.0, 0.12)) if knot_frac is None else knot_frac
    g_r_disk = float(rng.normal(0.55, 0.07)) if g_r_disk is None else g_r_disk
    if n_arms == 0:
        arm_frac = 0.0
    mag = mag_from_mu(mu_e, r50)
    h = r50 / 1.678  # exponential scale length
    sense = int(rng.choice([-1, 1]))
    comps = []

    # bulge
    r50_b = float(r50 * rng.uniform(0.12, 0.28))
    n_b = float(rng.uniform(1.5, 4.0))
    if bulge_frac > 0.005:
        comps.append(dict(kind="sersic", n=n_b, r50=r50_b, q=float(max(q, rng.uniform(0.65, 1.0))),
                          pa=pa, x=x, y=y, mag_r=split_mag(mag, bulge_frac),
                          g_r=float(rng.normal(0.75, 0.04)), r_z=float(rng.normal(0.43, 0.04))))
    # bar
    phi = float(rng.uniform(0, 180))
    bar_len = float(h * rng.uniform(0.7, 1.3))
    if bar:
        bar_frac = float(rng.uniform(0.15, 0.28) if bar == 2 else rng.uniform(0.06, 0.12))
        comps.append(dict(kind="sersic", n=0.5, r50=bar_len * 0.55, q=float(rng.uniform(0.22, 0.35)),
                          pa=bar_axis(pa, q, phi), x=x, y=y, mag_r=split_mag(mag, bar_frac),
                          g_r=float(rng.normal(0.68, 0.04)), r_z=float(rng.normal(0.4, 0.04))))
    else:
        bar_frac = 0.0
    disk_frac = max(1.0 - bulge_frac - bar_frac, 0.05)
    # disk
    comps.append(dict(kind="sersic", n=1.0, r50=r50, q=q, pa=pa, x=x, y=y,
                      mag_r=split_mag(mag, disk_frac * (1 - arm_frac - knot_frac)), g_r=g_r_disk,
                      r_z=float(rng.normal(0.35, 0.04))))
    n_knots_total = 0
    if n_arms:
        r_in = float(max(bar_len if bar else 0.0, 1.6 * r50_b, 0.35 * h))
        arms, n_knots_total = _arm_components(
            rng, dict(x=x, y=y, pa=pa, q=q, h=h, m=n_arms, pitch=pitch, phase=float(np.deg2rad(phi)), sense=sense,
                      r_in=r_in), mag_r=split_mag(mag, disk_frac * arm_frac), g_r=float(g_r_disk - 0.12),
            clump_mag_r=split_mag(mag, disk_frac * knot_frac * 0.6) if knot_frac > 0 else None, n_clumps=n_clumps,
            sharpness=arm_sharpness, amplitudes=arm_amplitudes, lengths=arm_lengths, wobble=wobble)
        comps += arms
    nk = int(n_knots) if n_knots is not None else int(rng.integers(8, 40))
    if knot_frac > 0 and nk > 0:
        n_knots_total += nk
        comps.append(dict(kind="knots", n_knots=nk, r50=r50, q=q, pa=pa, x=x, y=y,
                          seed=int(rng.integers(2**31)),
                          mag_r=split_mag(mag, disk_frac * knot_frac * (0.4 if n_arms else 1.0)),
                          g_r=float(rng.normal(0.2, 0.06)), r_z=float(rng.normal(0.1, 0.05))))
    featured = 0.9 if n_arms else (0.55 if bar else 0.35)
    return comps, info(subtype=subtype, mag_r=mag, r50_arcsec=r50, axis_ratio=q, pa_deg=pa, sersic_n=1.0,
                       bulge_frac=bulge_frac, g_r=g_r_disk, r_z=0.35, n_arms=n_arms,
                       pitch_deg=pitch if n_arms else math.nan, bar=bar, n_knots=n_knots_total,
                       featured=featured)


def edge_on_disk(rng: np.random.Generator, x=0.0, y=0.0) -> tuple[list, dict]:
    """A disk seen edge-on: thin exponential disk (axis ratio 0.08-0.2) and a rounder bulge."""
    r50 = float(np.clip(rng.lognormal(np.log(3.6), 0.3), 2.0, 6.5))
    q = float(rng.uniform(0.08, 0.2))
    pa = float(rng.uniform(0, 180))
    mu_e = float(rng.normal(20.6, 0.4))  # edge-on disks look brighter per area
    bulge_frac = float(rng.choice([0.0, rng.uniform(0.05, 0.45)], p=[0.3, 0.7]))
    mag = mag_from_mu(mu_e, r50)
    g_r = float(rng.normal(0.65, 0.06))
    comps = [dict(kind="sersic", n=1.0, r50=r50, q=q, pa=pa, x=x, y=y, mag_r=split_mag(mag, 1 - bulge_frac),
                  g_r=g_r, r_z=float(rng.normal(0.42, 0.04)))]
    if bulge_frac > 0:
        comps.append(dict(kind="sersic", n=float(rng.uniform(1.0, 3.0)), r50=float(r50 * rng.uniform(0.15, 0.3)),
                          q=float(rng.uniform(0.55, 0.95)), pa=pa, x=x, y=y, mag_r=split_mag(mag, bulge_frac),
                          g_r=float(rng.normal(0.76, 0.04)), r_z=float(rng.normal(0.45, 0.04))))
    return comps, info(subtype="edge_on", mag_r=mag, r50_arcsec=r50, axis_ratio=q, pa_deg=pa, sersic_n=1.0,
                       bulge_frac=bulge_frac, g_r=g_r, r_z=0.42, edge_on=True, featured=0.85)


def faint_small(rng: np.random.Generator, x=0.0, y=0.0) -> tuple[list, dict]:
    """A faint, small galaxy (r50 0.8-2'', r 18.3-19.8): detail lost to the PSF."""
    r50 = float(rng.uniform(0.8, 2.0))
    mag = float(rng.uniform(18.3, 19.8))
    n = float(rng.choice([1.0, rng.uniform(2.0, 4.5)]))
    q = float(rng.uniform(0.3, 1.0))
    pa = float(rng.uniform(0, 180))
    g_r = float(rng.normal(0.55 if n == 1.0 else 0.78, 0.08))
    r_z = float(rng.normal(0.4, 0.06))
    comps = [dict(kind="sersic", n=n, r50=r50, q=q, pa=pa, x=x, y=y, mag_r=mag, g_r=g_r, r_z=r_z)]
    return comps, info(subtype="faint_small", mag_r=mag, r50_arcsec=r50, axis_ratio=q, pa_deg=pa, sersic_n=n,
                       bulge_frac=1.0 if n > 1 else 0.0, g_r=g_r, r_z=r_z, featured=0.25 if n == 1.0 else 0.05)
