"""Light distributions GalSim has no profile for, drawn on a pixel grid with NumPy.

GalSim supplies the smooth parts of a galaxy (Sérsic bulges, exponential disks, bars,
``RandomKnots``); it has no spiral arms, rings, tidal tails, shells, satellite trails, diffraction
spikes or ghost reflections. Each function here returns such a shape's surface brightness, **before** the PSF
and in arbitrary units, at given sky coordinates; :func:`total` gives its integral over the whole
sky (analytic for shapes built of Gaussians, otherwise summed on a coarse grid wide enough for a
galaxy much larger than the cutout), so :mod:`raregal.synth.render` can give the part of a shape
inside the cutout its share of the component's flux. It then hands the shapes to GalSim as an
``InterpolatedImage``, so they are convolved with each band's PSF and pixelised exactly like the
analytic parts. A ``line`` is infinite: its flux is the flux inside the cutout.

Coordinates are arcsec from the stamp centre, x to the right, y up; position angles ``pa`` are in
degrees counter-clockwise from +x (GalSim's ``beta`` convention); ``q`` is the axis ratio of an
inclined disk. Every shape is a pure function of its parameters (its own ``seed`` where it has
random parts), so a scene description re-draws identically.
"""

from __future__ import annotations

import functools
import json

import numpy as np

#: Shape kinds and their functions (filled in at the bottom of this module).
SHAPES: dict = {}
#: Shapes whose flux is their flux inside the cutout (they have no finite total).
IN_CUTOUT = ("line",)
# Grid on which clump positions are drawn and totals of non-Gaussian shapes are summed:
# _LAYOUT_N^2 points over the shape's whole extent (:func:`extent`), centred on it.
_LAYOUT_N = 160
#: Component keys that are not shape parameters (flux and colour).
_NOT_SHAPE = ("mag_r", "g_r", "r_z", "band_weights")


def grid(n: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), each (n, n) in arcsec, of an n x n grid of ``scale``-arcsec
    pixels centred on the stamp centre (``array[iy, ix]`` is at ``(x[iy, ix], y[iy, ix])``)."""
    c = (n - 1) / 2.0
    iy, ix = np.mgrid[0:n, 0:n]
    return (ix - c) * scale, (iy - c) * scale


def disk_coords(x, y, x0=0.0, y0=0.0, pa=0.0, q=1.0):
    """Radius and azimuth (arcsec, radians) in the plane of a disk centred at (x0, y0) whose major
    axis lies at ``pa`` degrees and which is inclined to axis ratio ``q``."""
    a = np.deg2rad(pa)
    dx, dy = x - x0, y - y0
    xp = dx * np.cos(a) + dy * np.sin(a)
    yp = (-dx * np.sin(a) + dy * np.cos(a)) / max(q, 1e-3)
    return np.hypot(xp, yp), np.arctan2(yp, xp)


def _smoothstep(r, r0, soft):
    """0 well below ``r0``, 1 well above, a logistic step of width ``soft`` (arcsec)."""
    return 0.5 * (1.0 + np.tanh((r - r0) / max(soft, 1e-3)))


def arms(x, y, *, x0=0.0, y0=0.0, pa=0.0, q=1.0, h=2.0, m=2, pitch=20.0, phase=0.0, sense=1,
         r_in=1.0, r_out=None, sharpness=6.0, amplitudes=None, lengths=None, wobble=0.0,
         wobble_freq=2.0, wobble_phase=0.0, **_):
    """Logarithmic spiral arms on an exponential disk of scale length ``h`` (arcsec).

    Arm ``j`` of ``m`` follows ``theta = phase + 2 pi j / m + sense * ln(r / r_in) / tan(pitch)``
    from ``r_in`` (a bulge or bar end) out to ``lengths[j] * r_out``; ``sharpness`` sets the
    angular width (a cos^k profile), ``amplitudes[j]`` each arm's brightness (unequal arms, one
    dominant arm), and ``wobble`` (radians) a slow irregular bend of every arm.
    """
    r, th = disk_coords(x, y, x0, y0, pa, q)
    r = np.maximum(r, 1e-3)
    r_out = 4.0 * h if r_out is None else r_out
    amplitudes = np.ones(m) if amplitudes is None else np.asarray(amplitudes, float)
    lengths = np.ones(m) if lengths is None else np.asarray(lengths, float)
    lnr = np.log(r / r_in)
    bend = wobble * np.sin(wobble_freq * lnr + wobble_phase)
    envelope = np.exp(-r / h) * _smoothstep(r, r_in, 0.25 * r_in)
    out = np.zeros_like(r)
    for j in range(m):
        centre = phase + 2.0 * np.pi * j / m + sense * lnr / np.tan(np.deg2rad(pitch)) + bend
        pattern = ((1.0 + np.cos(th - centre)) / 2.0) ** sharpness
        taper = 1.0 - _smoothstep(r, lengths[j] * r_out, 0.15 * r_out)
        out += amplitudes[j] * pattern * taper
    return envelope * out


def ring(x, y, *, x0=0.0, y0=0.0, pa=0.0, q=1.0, radius=3.0, width=0.5, asym=0.0, asym_phase=0.0,
         **_):
    """A Gaussian ring of ``radius`` and ``width`` (arcsec, sigma) in an inclined plane; ``asym``
    (0-1) makes one side brighter, as in collisional ring galaxies."""
    r, th = disk_coords(x, y, x0, y0, pa, q)
    return np.exp(-0.5 * ((r - radius) / width) ** 2) * (1.0 + asym * np.cos(th - asym_phase))


def _arc_spine(x0=0.0, y0=0.0, pa=0.0, q=1.0, r0=2.0, theta0=0.0, sweep=2.0, growth=0.3,
               width0=0.3, width1=0.8, fade=0.3, n_points=90, **_):
    t = np.linspace(0.0, sweep, n_points)
    rs = r0 * np.exp(growth * np.abs(t))
    xd, yd = rs * np.cos(theta0 + t), rs * np.sin(theta0 + t) * q
    a = np.deg2rad(pa)
    px = x0 + xd * np.cos(a) - yd * np.sin(a)
    py = y0 + xd * np.sin(a) + yd * np.cos(a)
    s = np.linspace(0.0, 1.0, n_points)
    w = width0 + (width1 - width0) * s
    # brightness per unit length along the spine: weight each Gaussian by its segment length
    seg = np.hypot(np.gradient(px), np.gradient(py))
    weight = (1.0 + (fade - 1.0) * s) * seg / w
    return px, py, w, weight


def _gaussians(x, y, px, py, w, weight):
    """Sum of circular Gaussians (centres px, py; sigmas w; peak values weight) at (x, y).

    On a regular grid (from :func:`grid`) each Gaussian is evaluated only within 5 sigma of its
    centre, which makes a hundred clumps cost about as much as one full-grid evaluation.
    """
    out = np.zeros_like(x)
    regular = x.ndim == 2 and x.shape[1] > 1 and x.shape[0] > 1
    if regular:
        step, x00, y00 = x[0, 1] - x[0, 0], x[0, 0], y[0, 0]
        regular = step > 0 and np.isclose(y[1, 0] - y00, step)
    for i in range(len(px)):
        if regular:
            r = 5.0 * w[i]
            i0 = max(int(np.floor((py[i] - r - y00) / step)), 0)
            i1 = min(int(np.ceil((py[i] + r - y00) / step)) + 1, x.shape[0])
            j0 = max(int(np.floor((px[i] - r - x00) / step)), 0)
            j1 = min(int(np.ceil((px[i] + r - x00) / step)) + 1, x.shape[1])
            if i0 >= i1 or j0 >= j1:
                continue
            sl = (slice(i0, i1), slice(j0, j1))
        else:
            sl = (slice(None),) * x.ndim
        out[sl] += weight[i] * np.exp(-0.5 * ((x[sl] - px[i]) ** 2 + (y[sl] - py[i]) ** 2) / w[i] ** 2)
    return out


def arc(x, y, **params):
    """A tapering curved band: a tidal tail, stream or lensed arc.

    Its spine is the spiral ``r = r0 exp(growth * t)``, ``theta = theta0 + t`` for ``t`` from 0 to
    ``sweep`` radians (``growth = 0``: a circular arc; negative ``sweep``: clockwise) around
    (``x0``, ``y0``), in a plane inclined to ``q`` at ``pa``. The width (sigma, arcsec) grows from
    ``width0`` to ``width1`` and the surface brightness falls to ``fade`` of its start.
    """
    return _gaussians(x, y, *_arc_spine(**params))


def shells(x, y, *, x0=0.0, y0=0.0, pa=0.0, q=1.0, radii=(3.0, 4.5), phase=0.0, opening=1.2,
           inner=0.8, edge=0.15, **_):
    """Concentric shells around a galaxy: sharp-edged arcs of the given ``radii`` (arcsec) on
    alternating sides (azimuth ``phase``, ``phase + pi``, ...), each spanning about ``opening``
    radians, brightest just inside its edge and fading inwards over ``inner`` arcsec."""
    r, th = disk_coords(x, y, x0, y0, pa, q)
    out = np.zeros_like(r)
    for k, radius in enumerate(radii):
        side = phase + np.pi * (k % 2)
        # cos^k falls to exp(-1/2) at about +-opening/2 from the shell's axis
        ang = ((1.0 + np.cos(th - side)) / 2.0) ** (8.0 / max(opening, 0.2) ** 2)
        inside = np.exp(-np.clip(radius - r, 0, None) / inner)
        outside = np.exp(-0.5 * (np.clip(r - radius, 0, None) / edge) ** 2)
        out += ang * inside * outside / (1.0 + 0.3 * k)
    return out


def line(x, y, *, x0=0.0, y0=0.0, angle=0.0, width=0.1, gradient=0.0, **_):
    """A straight line across the whole stamp (a satellite or aeroplane trail) through (x0, y0)
    at ``angle`` degrees, Gaussian across with sigma ``width`` arcsec; ``gradient`` brightens one
    end (fractional change per 10 arcsec)."""
    a = np.deg2rad(angle)
    along = (x - x0) * np.cos(a) + (y - y0) * np.sin(a)
    across = -(x - x0) * np.sin(a) + (y - y0) * np.cos(a)
    return np.exp(-0.5 * (across / width) ** 2) * np.clip(1.0 + gradient * along / 10.0, 0.05, None)


def spikes(x, y, *, x0=0.0, y0=0.0, angle=0.0, length=6.0, n_spikes=4, width=0.25, **_):
    """Diffraction spikes of a bright star at (x0, y0): ``n_spikes`` thin rays at ``angle`` +
    k 360/n degrees, fading exponentially over ``length`` arcsec."""
    out = np.zeros_like(x)
    for k in range(n_spikes):
        a = np.deg2rad(angle + 360.0 * k / n_spikes)
        along = (x - x0) * np.cos(a) + (y - y0) * np.sin(a)
        across = -(x - x0) * np.sin(a) + (y - y0) * np.cos(a)
        ray = np.exp(-0.5 * (across / width) ** 2) * np.exp(-np.clip(along, 0, None) / length)
        out += np.where(along > 0, ray, 0.0)
    return out


def ghost(x, y, *, x0=0.0, y0=0.0, radius=5.0, hole=0.45, soft=0.4, **_):
    """A pupil ghost (an out-of-focus reflection of a bright star): a flat disk of ``radius``
    arcsec with a central hole of ``hole * radius`` (the secondary mirror's shadow), soft-edged."""
    r = np.hypot(x - x0, y - y0)
    return (1.0 - _smoothstep(r, radius, soft)) * _smoothstep(r, hole * radius, soft)


def _key(spec: dict) -> str:
    return json.dumps({k: v for k, v in spec.items() if k not in _NOT_SHAPE}, sort_keys=True,
                      default=float)


def extent(spec: dict) -> float:
    """Radius (arcsec) around the shape's centre outside which it has no appreciable light."""
    kind = spec["kind"]
    if kind == "arms":
        r_out = spec.get("r_out") or 4.0 * spec.get("h", 2.0)
        return float(1.3 * r_out + 1.0)  # arms are tapered off over 0.15 r_out beyond r_out
    if kind == "ring":
        return float(spec.get("radius", 3.0) + 5 * spec.get("width", 0.5) + 0.5)
    if kind == "shells":
        return float(max(spec.get("radii", (4.5,))) + 4 * spec.get("edge", 0.15) + 1.0)
    if kind == "ghost":
        return float(spec.get("radius", 5.0) + 4 * spec.get("soft", 0.4))
    if kind == "spikes":
        return float(8 * spec.get("length", 6.0))
    return 64.0


@functools.lru_cache(maxsize=32)
def _coarse(key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(x, y, surface brightness, step) of a shape on a grid over its whole extent."""
    spec = json.loads(key)
    x0, y0 = spec.get("x", spec.get("x0", 0.0)), spec.get("y", spec.get("y0", 0.0))
    step = 2.0 * extent(spec) / _LAYOUT_N
    gx, gy = grid(_LAYOUT_N, step)
    gx, gy = gx + x0, gy + y0
    return gx, gy, draw_shape(spec, gx, gy), step


@functools.lru_cache(maxsize=32)
def _clump_layout(key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions (arcsec) and relative fluxes of the clumps of a ``clumps`` spec."""
    spec = json.loads(key)
    # positions are drawn on a fixed grid around the host, so they do not depend on the cutout
    gx, gy, sb, step = _coarse(_key(spec["shape"]))
    p = sb.ravel()
    rng = np.random.default_rng(int(spec.get("seed", 0)))
    n = int(spec.get("n", 20))
    idx = rng.choice(p.size, size=n, p=p / p.sum() if p.sum() > 0 else None)
    px = gx.ravel()[idx] + rng.uniform(-0.5, 0.5, n) * step
    py = gy.ravel()[idx] + rng.uniform(-0.5, 0.5, n) * step
    return px, py, rng.lognormal(0.0, 0.6, n)


def clumps(x, y, *, shape, n=20, sigma=0.15, seed=0, **_):
    """``n`` compact star-forming clumps (Gaussians of ``sigma`` arcsec) placed at random along
    another shape (a dict with ``kind`` and its parameters): positions are drawn with
    probability proportional to that shape's brightness, with seed ``seed``."""
    px, py, flux = _clump_layout(_key(dict(kind="clumps", shape=shape, n=n, seed=seed)))
    return _gaussians(x, y, px, py, np.full(len(px), float(sigma)), flux / (2 * np.pi * sigma**2))


def draw_shape(spec: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Evaluate the shape ``spec`` (``{"kind": name, **parameters}``) on the grid (x, y).

    Its centre may be given as ``x``, ``y`` (as in scene components) or ``x0``, ``y0``."""
    try:
        fn = SHAPES[spec["kind"]]
    except KeyError:
        raise ValueError(f"unknown shape kind {spec.get('kind')!r}; known: {', '.join(SHAPES)}") from None
    params = {k: v for k, v in spec.items() if k != "kind"}
    # components place themselves with "x", "y" (as the analytic ones do); shapes call it x0, y0
    params["x0"] = params.pop("x", params.get("x0", 0.0))
    params["y0"] = params.pop("y", params.get("y0", 0.0))
    return np.clip(fn(x, y, **params), 0.0, None)


def total(spec: dict) -> float | None:
    """Integral of the shape's surface brightness over the sky (arcsec^2 x its units), or None
    for shapes in :data:`IN_CUTOUT`."""
    kind = spec["kind"]
    if kind in IN_CUTOUT:
        return None
    if kind == "arc":
        _, _, w, weight = _arc_spine(**{k: v for k, v in spec.items() if k not in ("kind", "x", "y")})
        return float(np.sum(weight * 2 * np.pi * w**2))
    if kind == "clumps":
        return float(_clump_layout(_key(spec))[2].sum())
    _, _, sb, step = _coarse(_key(spec))
    return float(sb.sum() * step**2)


SHAPES.update(arms=arms, ring=ring, arc=arc, shells=shells, line=line, spikes=spikes, ghost=ghost,
              clumps=clumps)
