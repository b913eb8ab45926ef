"""Where a galaxy is on the sky: the ``ra``/``dec`` columns, their checks, viewer links and formatting.

raregal carries sky coordinates when a table has them: ``ra`` and ``dec`` in degrees (ICRS, as the
Legacy Surveys and Galaxy Zoo DESI catalogs give them). ``RA``/``DEC`` (any capitalisation) are
accepted too and renamed; no other alias is guessed, so a column is never taken for a
coordinate by accident.

:func:`with_coordinates` checks them once, where a table enters raregal (``raregal search``'s
input, the run's ``clusters.parquet``, a ``--catalog``): a right ascension outside [0, 360) or a
declination outside [-90, 90] (or an infinite one) is *bad*. Bad rows are named by ``id_str`` in
a warning and their coordinates set to NaN, so no galaxy is ever shown at a wrong place; when
every row with a coordinate is bad (degrees mixed up with something else), it is an
:class:`~raregal.errors.InputError`. NaN stays NaN: "position unknown".

:func:`viewer_url` links a position to the Legacy Surveys sky viewer; :func:`format_deg` and
:func:`format_hms_dms` write a position the way astronomers read it.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

import numpy as np
import pandas as pd

from raregal.errors import InputError

log = logging.getLogger("raregal")

RA, DEC = "ra", "dec"
#: The Legacy Surveys viewer's layer linked by default (DR10 images, grz).
DEFAULT_LAYER = "ls-dr10"
VIEWER = "https://www.legacysurvey.org/viewer?ra={ra:.5f}&dec={dec:.5f}&layer={layer}&zoom={zoom}"
#: How many bad ids a warning or error names.
_SHOW = 10
_LAYER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def find_columns(frame: pd.DataFrame) -> tuple[str | None, str | None]:
    """The names of ``frame``'s right ascension and declination columns (``ra``/``dec``, else any case)."""
    def one(name: str) -> str | None:
        if name in frame.columns:
            return name
        hits = [c for c in frame.columns if isinstance(c, str) and c.lower() == name]
        return hits[0] if len(hits) == 1 else None

    return one(RA), one(DEC)


def has_coordinates(frame: pd.DataFrame | None) -> bool:
    """Whether ``frame`` has ``ra`` and ``dec`` columns with at least one known position."""
    return frame is not None and RA in frame.columns and DEC in frame.columns \
        and bool((frame[RA].notna() & frame[DEC].notna()).any())


def bad_positions(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Mask of rows whose position is given but impossible: infinite, RA outside [0, 360), Dec outside [-90, 90]."""
    ra, dec = np.asarray(ra, np.float64), np.asarray(dec, np.float64)
    given = ~(np.isnan(ra) | np.isnan(dec))
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(ra) & np.isfinite(dec) & (ra >= 0) & (ra < 360) & (dec >= -90) & (dec <= 90)
    return given & ~ok


def _numbers(frame: pd.DataFrame, col: str, where: str) -> np.ndarray:
    values = frame[col]
    if pd.api.types.is_bool_dtype(values) or not (pd.api.types.is_numeric_dtype(values) or values.isna().all()):
        raise InputError(f"{where}: column {col!r} is not numeric ({values.dtype}); sky coordinates are "
                         "expected in degrees")
    return values.to_numpy(np.float64, na_value=np.nan)


def with_coordinates(frame: pd.DataFrame, where: str = "table") -> pd.DataFrame:
    """``frame`` with checked ``ra``/``dec`` columns (float64 degrees), or unchanged when it has none.

    ``RA``/``DEC`` in another capitalisation are renamed to ``ra``/``dec``. A table with only one
    of the two gets a warning and no coordinates. Rows with an impossible position (see
    :func:`bad_positions`) are listed by ``id_str`` in a warning and get NaN; when no row's
    position is possible, InputError. ``where`` (a path) names the table in messages.
    """
    ra_col, dec_col = find_columns(frame)
    if ra_col is None and dec_col is None:
        return frame
    if ra_col is None or dec_col is None:
        have, lack = (ra_col, "dec") if dec_col is None else (dec_col, "ra")
        log.warning("%s: has a %r column but no %r: no sky coordinates are carried", where, have, lack)
        return frame
    ra, dec = _numbers(frame, ra_col, where), _numbers(frame, dec_col, where)
    bad = bad_positions(ra, dec)
    if bad.any():
        ids = frame["id_str"].to_numpy()[bad] if "id_str" in frame.columns else np.flatnonzero(bad)
        shown = ", ".join(map(str, ids[:_SHOW])) + (" ..." if len(ids) > _SHOW else "")
        what = (f"{int(bad.sum())} row(s) with RA outside [0, 360) or Dec outside [-90, 90] degrees "
                f"(columns {ra_col!r}, {dec_col!r})")
        if bad.sum() == (~(np.isnan(ra) | np.isnan(dec))).sum():
            raise InputError(f"{where}: every position is impossible: {what}, e.g. {shown}. Give RA and Dec "
                             "in degrees (ICRS); RA from -180 to 180 becomes 0..360 with ra % 360")
        log.warning("%s: %s are left without a position (NaN): %s", where, what, shown)
        ra, dec = ra.copy(), dec.copy()
        ra[bad] = dec[bad] = np.nan
    frame = frame.rename(columns={ra_col: RA, dec_col: DEC})
    frame[RA], frame[DEC] = ra, dec
    return frame


def check_layer(layer: str) -> str:
    """A Legacy Surveys viewer layer name (``ls-dr10``, ``ls-dr9``, ``sdss``, ...), or InputError."""
    if not isinstance(layer, str) or not _LAYER_RE.match(layer):
        raise InputError(f"sky_layer {layer!r}: not a layer name of the Legacy Surveys viewer (e.g. {DEFAULT_LAYER}, "
                         "ls-dr9, unwise-neo7)", param="sky_layer")
    return layer


def viewer_url(ra: float, dec: float, layer: str = DEFAULT_LAYER, zoom: int = 16) -> str | None:
    """The Legacy Surveys viewer at (ra, dec) degrees, or None when the position is unknown."""
    if ra is None or dec is None or not (np.isfinite(ra) and np.isfinite(dec)):
        return None
    return VIEWER.format(ra=float(ra), dec=float(dec), layer=quote(layer, safe="-_."), zoom=int(zoom))


def format_deg(ra: float, dec: float) -> str:
    """``"150.11917, +2.20583"``: degrees with 5 decimals (0.036''), Dec signed; "" when unknown."""
    if ra is None or dec is None or not (np.isfinite(ra) and np.isfinite(dec)):
        return ""
    return f"{ra:.5f}, {dec:+.5f}"


def format_hms_dms(ra: float, dec: float) -> str:
    """``"10h00m28.60s +02d12m21.0s"`` (astropy), "" when unknown."""
    if ra is None or dec is None or not (np.isfinite(ra) and np.isfinite(dec)):
        return ""
    from astropy import units as u
    from astropy.coordinates import Angle

    return (f"{Angle(ra, u.deg).to_string(unit=u.hourangle, sep='hms', precision=2, pad=True)} "
            f"{Angle(dec, u.deg).to_string(unit=u.deg, sep='dms', precision=1, alwayssign=True, pad=True)}")


def unit_table(frame: pd.DataFrame):
    """``frame`` as an astropy Table with ``ra``/``dec`` in degrees and their UCDs (for FITS and VOTable).

    Text columns become strings ("" for missing), so every writer accepts them.
    """
    from astropy import units as u
    from astropy.table import Table

    frame = frame.copy()
    for col in frame.columns:
        if frame[col].dtype == object:
            frame[col] = frame[col].map(lambda v: "" if v is None or v != v else str(v))
    table = Table.from_pandas(frame)
    if "id_str" in table.colnames:
        table["id_str"].meta["ucd"] = "meta.id;meta.main"
    for col, ucd, text in ((RA, "pos.eq.ra;meta.main", "right ascension (ICRS)"),
                           (DEC, "pos.eq.dec;meta.main", "declination (ICRS)")):
        if col in table.colnames:
            table[col].unit = u.deg
            table[col].description = text
            table[col].meta["ucd"] = ucd
    return table
