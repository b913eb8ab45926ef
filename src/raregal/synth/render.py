"""Render a scene description into g, r, z images with GalSim.

A **scene** is a JSON-serialisable dict: the stamp (``size`` pixels of ``pixel_scale`` arcsec),
the observing conditions (``psf_fwhm`` and ``sky_sigma`` per band, ``psf_beta``), a ``seed`` and a
list of ``components``. Each component has a ``kind``, a position and shape, an r-band magnitude
``mag_r`` and colours ``g_r``, ``r_z`` (optionally ``band_weights``, e.g. ``[0, 0, 1]`` for light in
one band only). Kinds:

* analytic, drawn by GalSim: ``sersic`` (``n``, ``r50``, ``q``, ``pa``), ``point`` (a star or
  unresolved source), ``halo`` (a bright star's extended wings: a Moffat of ``fwhm``, ``beta``),
  ``knots`` (``galsim.RandomKnots``: ``n_knots`` star-forming clumps scattered like a disk of
  ``r50``);
* shapes GalSim lacks (:mod:`raregal.synth.shapes`): ``arms``, ``ring``, ``arc``, ``shells``,
  ``line``, ``spikes``, ``ghost``, ``clumps``, drawn on a 2x oversampled grid and handed to GalSim
  as an ``InterpolatedImage``.

Every band's light is convolved with that band's Moffat PSF and integrated over pixels by GalSim;
then Gaussian sky noise is added. ``missing_band`` (0, 1 or 2) blanks a band as in survey regions
without that band's exposures. :func:`render_scene` is a pure function of the scene.
"""

from __future__ import annotations

import functools

import galsim
import numpy as np

from raregal.synth.bands import BANDS, band_fluxes
from raregal.synth.shapes import SHAPES, draw_shape, grid
from raregal.synth.shapes import total as shape_total

#: Component kinds GalSim draws from its own profiles; the rest are :data:`shapes.SHAPES`.
ANALYTIC = ("sersic", "point", "halo", "knots")
#: Oversampling of the grid on which shapes are drawn before GalSim interpolates them.
OVERSAMPLE = 2

# Sky noise dominates every pixel, so GalSim's default accuracy (folding 5e-3) buys nothing:
# looser thresholds give smaller FFTs and about twice the speed.
_GSPARAMS = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=3e-3, maximum_fft_size=8192)


#: Sérsic profiles are cut at this many half-light radii. Beyond about 5 r50 they are fainter
#: than the sky noise, and without the cut an n = 4-6 profile's faint wings make GalSim's FFT
#: 4x wider (and the render 3x slower) for no visible difference.
SERSIC_TRUNC = 5.0


@functools.lru_cache(maxsize=128)
def _unit_sersic(n: float) -> galsim.GSObject:
    # One unit-size profile per index; sizes come from dilate(), which shares GalSim's tables
    # (building each galaxy's truncated Sersic afresh costs ~0.5 ms of table look-ups).
    if abs(n - 1.0) < 1e-6:
        return galsim.Exponential(half_light_radius=1.0, gsparams=_GSPARAMS)
    trunc = SERSIC_TRUNC if n > 1.5 else 0.0
    return galsim.Sersic(n=n, half_light_radius=1.0, trunc=trunc, gsparams=_GSPARAMS)


def _sersic(n: float, r50: float) -> galsim.GSObject:
    """Unit-flux Sersic profile of index ``n`` (rounded to 0.1) and half-light radius ``r50``."""
    return _unit_sersic(round(n * 10) / 10).dilate(r50)


def _place(obj: galsim.GSObject, c: dict) -> galsim.GSObject:
    q = float(c.get("q", 1.0))
    if q < 0.999:
        obj = obj.shear(q=q, beta=float(c.get("pa", 0.0)) * galsim.degrees)
    x, y = float(c.get("x", 0.0)), float(c.get("y", 0.0))
    return obj.shift(x, y) if (x or y) else obj


def _analytic(c: dict, seed: int) -> galsim.GSObject:
    """The unit-flux GalSim profile (before the PSF) of a ``sersic`` or ``knots`` component."""
    kind = c["kind"]
    if kind == "sersic":
        return _place(_sersic(float(c["n"]), float(c["r50"])), c)
    if kind == "knots":
        prof = galsim.RandomKnots(int(c["n_knots"]), half_light_radius=float(c["r50"]),
                                  rng=galsim.BaseDeviate(int(c.get("seed", seed))), gsparams=_GSPARAMS)
        return _place(prof, c)
    raise ValueError(f"unknown analytic component kind {kind!r}")


def _psf_like(c: dict, psf: galsim.GSObject, fwhm: float, beta: float) -> galsim.GSObject:
    """A ``point`` (the PSF itself) or ``halo`` component, already including the PSF.

    A halo (beta-2 Moffat, several arcsec) is much wider than the PSF, so its convolution with
    the PSF is well approximated by a Moffat whose FWHM adds the two in quadrature.
    """
    if c["kind"] == "point":
        prof = psf
    else:
        prof = galsim.Moffat(beta=float(c.get("beta", 2.0)), fwhm=float(np.hypot(c["fwhm"], fwhm)),
                             trunc=float(c.get("trunc", 40.0)), gsparams=_GSPARAMS)
    return prof.shift(float(c.get("x", 0.0)), float(c.get("y", 0.0)))


def component_fluxes(c: dict) -> np.ndarray:
    """(3,) flux of a component in g, r, z, nanomaggies."""
    f = band_fluxes(float(c["mag_r"]), float(c.get("g_r", 0.6)), float(c.get("r_z", 0.4)))
    if "band_weights" in c:
        f = f * np.asarray(c["band_weights"], dtype=float)
    return f


def render_scene(scene: dict, noise: bool = True) -> np.ndarray:
    """Render ``scene`` -> (3, size, size) float32 image in nanomaggies per pixel, bands g, r, z.

    ``noise=False`` returns the noiseless, PSF-convolved image (for tests and checks).
    """
    n = int(scene["size"])
    scale = float(scene["pixel_scale"])
    seed = int(scene["seed"])
    comps = scene["components"]
    unknown = {c["kind"] for c in comps} - set(ANALYTIC) - set(SHAPES)
    if unknown:
        raise ValueError(f"unknown component kinds {sorted(unknown)}; known: {', '.join(ANALYTIC + tuple(SHAPES))}")
    psfs = [galsim.Moffat(beta=float(scene.get("psf_beta", 3.5)), fwhm=float(f), gsparams=_GSPARAMS)
            for f in scene["psf_fwhm"]]

    # Shapes: drawn once on a fine grid, combined per band with each shape's colour.
    shape_comps = [c for c in comps if c["kind"] in SHAPES]
    shape_bands = None
    if shape_comps:
        nf = n * OVERSAMPLE
        x, y = grid(nf, scale / OVERSAMPLE)
        shape_bands = np.zeros((len(BANDS), nf, nf))
        pixel_area = (scale / OVERSAMPLE) ** 2
        for c in shape_comps:
            img = draw_shape(c, x, y)
            whole = shape_total(c)
            norm = img.sum() if whole is None else whole / pixel_area
            if norm > 0:
                shape_bands += component_fluxes(c)[:, None, None] * (img / norm)[None]

    # Analytic parts: knots are drawn on their own (a sum of delta functions has a costly
    # Fourier transform, which should not set the FFT size of the smooth parts).
    smooth = [(c, _analytic(c, seed)) for c in comps if c["kind"] == "sersic"]
    # Stars (and their halos) are drawn in real space: the Fourier transform of a source
    # 10^5 times brighter than the sky, shifted off the stamp, folds visible ringing into it.
    stars = [c for c in comps if c["kind"] in ("point", "halo")]
    knots = [(c, _analytic(c, seed + 7919 * (i + 1))) for i, c in enumerate(comps) if c["kind"] == "knots"]

    out = np.zeros((len(BANDS), n, n), dtype=np.float64)
    for b, psf in enumerate(psfs):
        image = galsim.ImageD(n, n, scale=scale)
        parts = [prof * float(component_fluxes(c)[b]) for c, prof in smooth]
        if shape_bands is not None and shape_bands[b].sum() != 0:
            parts.append(galsim.InterpolatedImage(
                galsim.ImageD(shape_bands[b], scale=scale / OVERSAMPLE),
                flux=float(shape_bands[b].sum()), pad_factor=2, gsparams=_GSPARAMS))
        if parts:
            galsim.Convolve(galsim.Add(parts) if len(parts) > 1 else parts[0], psf).drawImage(
                image=image, add_to_image=True)
        for c, prof in knots:
            flux = float(component_fluxes(c)[b])
            if flux > 0:
                galsim.Convolve(prof * flux, psf).drawImage(image=image, add_to_image=True)
        if stars:
            fine = galsim.ImageD(n * OVERSAMPLE, n * OVERSAMPLE, scale=scale / OVERSAMPLE)
            beta = float(scene.get("psf_beta", 3.5))
            for c in stars:
                prof = _psf_like(c, psf, float(scene["psf_fwhm"][b]), beta) * float(component_fluxes(c)[b])
                prof.drawImage(image=fine, method="no_pixel", add_to_image=True)
            # sum OVERSAMPLE x OVERSAMPLE sub-pixels: the flux in each pixel
            image.array[:] += fine.array.reshape(n, OVERSAMPLE, n, OVERSAMPLE).sum(axis=(1, 3))
        out[b] = image.array

    if noise:
        rng = np.random.default_rng(seed)
        out += rng.standard_normal(out.shape) * np.asarray(scene["sky_sigma"], dtype=float)[:, None, None]
    missing = scene.get("missing_band")
    if missing is not None and missing >= 0:
        out[int(missing)] = 0.0
    return out.astype(np.float32)
