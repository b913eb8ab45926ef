"""Colour images of g, r, z fluxes the Legacy Surveys' way: one stretch for every grz picture raregal makes.

The synthetic survey (:mod:`raregal.synth`), FITS cutouts (:func:`raregal.images.dataset.load_image`,
:func:`raregal.views.report.thumbs.load_preview`) and therefore the model all turn a (g, r, z) cube of
fluxes in **nanomaggies per pixel** into the same RGB picture, so that a FITS cutout gives the
image a JPEG cutout of the same galaxy gives:

* z is shown as red, r as green, g as blue, each multiplied by a per-band scale
  (:data:`RGB_SCALE`: g 1.95, r 1.0, z 0.68; the ratios of the Legacy Surveys viewer's
  ``sdss_rgb`` scales g 6.0, r 3.4, z 2.2);
* the three are stretched together by the asinh stretch of Lupton et al. (2004)
  (:func:`astropy.visualization.make_lupton_rgb`, ``Q`` = :data:`RGB_Q` = 9, softening
  ``stretch`` = :data:`RGB_STRETCH` = 0.45 nanomaggies, black point :data:`RGB_MINIMUM` = -0.035
  nanomaggies), which keeps the colours of bright cores instead of saturating them to white;
* the stretch works on surface brightness: fluxes are scaled to the flux of a
  :data:`REFERENCE_PIXEL_SCALE` (0.524 arcsec) pixel, so a galaxy looks equally bright at any
  pixel scale and only the noise changes.

The scales were tuned by eye against Galaxy Zoo DECaLS cutouts (``tests/data/decals``): grey-beige
galaxies on a dark grey, slightly grainy sky. This module needs neither torch nor GalSim.
"""

from __future__ import annotations

import numpy as np

#: The bands of a cube, in the order of every (band, y, x) array: increasing wavelength.
BANDS: tuple[str, ...] = ("g", "r", "z")
#: Per-band scales multiplied into nanomaggies before the stretch.
RGB_SCALE = {"g": 1.95, "r": 1.0, "z": 0.68}
RGB_STRETCH = 0.45  # nanomaggies: where the asinh turns from linear to logarithmic
RGB_Q = 9.0
RGB_MINIMUM = -0.035  # nanomaggies: a slightly negative black point keeps the sky dark grey, not black
#: The pixel scale (arcsec) at which the stretch's fluxes are meant: 2 x 2 binned native pixels.
REFERENCE_PIXEL_SCALE = 0.524


def grz_to_rgb(image: np.ndarray, pixel_scale: float = REFERENCE_PIXEL_SCALE) -> np.ndarray:
    """Colour image of a (3, H, W) g, r, z array in nanomaggies per pixel -> (H, W, 3) uint8 RGB.

    ``pixel_scale``: arcsec per pixel of ``image`` (the stretch works on surface brightness, see
    the module docstring). Row 0 of ``image`` is row 0 of the result (no flip).
    """
    from astropy.visualization import make_lupton_rgb

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) g, r, z array, got shape {image.shape}")
    per_area = (REFERENCE_PIXEL_SCALE / float(pixel_scale)) ** 2
    g, r, z = (np.nan_to_num(np.asarray(image[i], dtype=float), nan=0.0, posinf=0.0, neginf=0.0)
               * (RGB_SCALE[b] * per_area) for i, b in enumerate(BANDS))
    return make_lupton_rgb(z, r, g, minimum=RGB_MINIMUM, stretch=RGB_STRETCH, Q=RGB_Q)


#: Pixel scale assumed for a FITS cube whose header carries no WCS: the native Legacy Surveys pixel.
DEFAULT_FITS_PIXEL_SCALE = 0.262


def fits_bands(header, n: int) -> tuple[str, ...] | None:
    """Band names of the ``n`` planes of a FITS cube from its header (``BANDS = 'grz'`` or ``BAND0..``), else None."""
    if header is None:
        return None
    named = [str(header.get(f"BAND{i}", "")).strip() for i in range(n)]
    if all(named):
        return tuple(b.lower() for b in named)
    bands = str(header.get("BANDS", "")).strip().lower()
    return tuple(bands) if len(bands) == n else None


def fits_pixel_scale(header, default: float = DEFAULT_FITS_PIXEL_SCALE) -> float:
    """Arcsec per pixel from a FITS header's WCS (``CD`` matrix, else ``CDELT``), else ``default``."""
    if header is None:
        return default
    try:
        if "CD1_1" in header or "CD2_2" in header:
            det = (float(header.get("CD1_1", 0.0)) * float(header.get("CD2_2", 0.0))
                   - float(header.get("CD1_2", 0.0)) * float(header.get("CD2_1", 0.0)))
            scale = float(np.sqrt(abs(det))) * 3600.0
        else:
            scale = float(np.sqrt(abs(float(header["CDELT1"]) * float(header["CDELT2"])))) * 3600.0
    except (KeyError, TypeError, ValueError):
        return default
    return scale if np.isfinite(scale) and scale > 0 else default


def is_colour_cube(data: np.ndarray) -> bool:
    """True for a (3, H, W) FITS cube: a g, r, z cutout shown in colour (see :func:`fits_to_rgb`)."""
    return np.ndim(data) == 3 and np.shape(data)[0] == 3


def fits_to_rgb(data: np.ndarray, header=None) -> np.ndarray:
    """The colour picture (H, W, 3) uint8 of a (3, H, W) FITS cube of g, r, z fluxes in nanomaggies.

    Planes are taken as g, r, z (the Legacy Surveys cutouts' order, ``bands=grz``), or in the
    order the header's ``BAND0..BAND2`` / ``BANDS`` name them; a cube naming other bands raises
    ValueError (it has no colour scales here). The pixel scale comes from the header's WCS
    (default :data:`DEFAULT_FITS_PIXEL_SCALE`). Rows are flipped (FITS rows run from the bottom,
    south, up), so the result is oriented like the JPEG cutout of the same galaxy: north up,
    east left.
    """
    bands = fits_bands(header, 3) or BANDS
    if sorted(bands) != sorted(BANDS):
        raise ValueError(f"FITS cube holds bands {''.join(bands)!r}; colour images are made of g, r, z cubes "
                         "(Legacy Surveys cutouts with bands=grz)")
    cube = np.stack([np.asarray(data[bands.index(b)], dtype=np.float64) for b in BANDS])
    return np.ascontiguousarray(grz_to_rgb(cube, fits_pixel_scale(header))[::-1])
