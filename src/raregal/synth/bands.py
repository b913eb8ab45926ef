"""The DESI Legacy Surveys' imaging, as numbers: bands, pixel scale, PSF, sky noise, colour images.

Images are in **nanomaggies per pixel** (the Legacy Surveys' unit: AB magnitude
``m = 22.5 - 2.5 log10(flux)``). Defaults follow DR9/DR10 DECaLS coadds:

* pixel scale 0.262 arcsec natively; cutouts default to 2 x 2 binned 0.524'' pixels (:data:`PIXEL_SCALE`);
* PSF: Moffat, beta 3.5, FWHM about 1.35'' (g), 1.25'' (r), 1.15'' (z), jittered per galaxy;
* sky noise per pixel from the median 5-sigma point-source depths g=24.0, r=23.4, z=22.5:
  ``sigma_pix = F_5sigma / 5 / sqrt(NEA)`` with the noise-equivalent area ``NEA = 4 pi sigma_psf^2``.

Colour images follow the Legacy Surveys' viewer: g, r, z go to blue, green, red with per-band
scales, through Lupton et al.'s (2004) asinh stretch (:func:`astropy.visualization.make_lupton_rgb`).
"""

from __future__ import annotations

import numpy as np

# Colour-image scales and stretch settings live in raregal.images.colour: one stretch for the synthetic
# survey and real FITS cutouts alike (re-exported here, where they used to be).
from raregal.images.colour import RGB_MINIMUM, RGB_Q, RGB_SCALE, RGB_STRETCH, grz_to_rgb  # noqa: F401

#: Bands, in the order of every (band, y, x) array in raregal.synth.
BANDS: tuple[str, ...] = ("g", "r", "z")
#: Native Legacy Surveys pixel scale, arcsec / pixel.
NATIVE_PIXEL_SCALE = 0.262
#: Default pixel scale of the cutouts: the native pixels binned 2 x 2, as the Legacy Surveys
#: cutout service delivers with ``pixscale=0.524``. A 64-pixel cutout then spans 33.5 arcsec,
#: enough for a large spiral and its neighbours, and the PSF (2.4 pixels FWHM) still resolves
#: arms, bars and rings at that size. Pass ``pixel_scale=0.262`` for native pixels.
PIXEL_SCALE = 2 * NATIVE_PIXEL_SCALE
#: AB zero point of a nanomaggy.
ZEROPOINT = 22.5
#: Median PSF FWHM per band, arcsec.
PSF_FWHM = {"g": 1.35, "r": 1.25, "z": 1.15}
#: Moffat beta of the PSF.
PSF_BETA = 3.5
#: Median 5-sigma point-source depth per band, AB mag.
DEPTH_5SIGMA = {"g": 24.0, "r": 23.4, "z": 22.5}

def mag_to_nmgy(mag):
    """AB magnitude -> flux in nanomaggies (array or scalar)."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=float) - ZEROPOINT))


def band_mags(mag_r: float, g_r: float, r_z: float) -> np.ndarray:
    """Magnitudes (g, r, z) of a source with r magnitude ``mag_r`` and colours g-r, r-z."""
    return np.array([mag_r + g_r, mag_r, mag_r - r_z])


def band_fluxes(mag_r: float, g_r: float, r_z: float) -> np.ndarray:
    """Fluxes (g, r, z) in nanomaggies of a source with r magnitude ``mag_r`` and colours g-r, r-z."""
    return mag_to_nmgy(band_mags(mag_r, g_r, r_z))


def sky_sigma(psf_fwhm: float, depth: float, pixel_scale: float = PIXEL_SCALE) -> float:
    """Per-pixel sky noise (nanomaggies) giving 5-sigma point-source depth ``depth`` (AB mag)
    for a Gaussian-equivalent PSF of FWHM ``psf_fwhm`` arcsec."""
    sigma_pix = psf_fwhm / 2.3548 / pixel_scale
    nea = 4.0 * np.pi * sigma_pix**2
    return float(mag_to_nmgy(depth) / 5.0 / np.sqrt(nea))


def to_rgb(image: np.ndarray, pixel_scale: float = PIXEL_SCALE) -> np.ndarray:
    """Colour image of a (3, H, W) g, r, z array in nanomaggies per pixel -> (H, W, 3) uint8 RGB.

    z is shown as red, r as green, g as blue, each scaled by :data:`RGB_SCALE`, and the three
    are stretched together with the asinh stretch of Lupton et al. (2004), which keeps colours
    of bright cores instead of saturating them to white. The stretch works on surface
    brightness (flux per :data:`PIXEL_SCALE`-sized pixel), so a galaxy looks equally bright at
    any ``pixel_scale`` (arcsec) and only the noise changes, as in the Legacy Surveys viewer.
    """
    return grz_to_rgb(image, pixel_scale)
