"""The survey's classes, how many of each, and one galaxy's scene from (class, seed, index).

Randomness is organised so that every galaxy is a pure function of ``(seed, index)``: galaxy
``i`` draws its parameters from ``SeedSequence(seed, spawn_key=(1, i))`` and its votes from
``spawn_key=(2, i)``, and the class list is shuffled with ``spawn_key=(0,)``. The survey is
therefore identical whatever the number of worker processes or the order they finish in.
"""

from __future__ import annotations

import numpy as np

from raregal.errors import InputError
from raregal.synth.artifacts import ARTIFACT_SAMPLERS
from raregal.synth.bands import PIXEL_SCALE
from raregal.synth.bulk import sample_bulk
from raregal.synth.field import STAR_HALO_RATE, conditions, neighbours, star_halo
from raregal.synth.rare import RARE_SAMPLERS

#: The class of ordinary galaxies.
BULK = "bulk"
#: Planted rare galaxy classes.
RARE_GALAXY_CLASSES: tuple[str, ...] = tuple(RARE_SAMPLERS)
#: Planted artifact classes.
ARTIFACT_CLASSES: tuple[str, ...] = tuple(ARTIFACT_SAMPLERS)
#: Every rare class (galaxies, then artifacts).
RARE_CLASSES: tuple[str, ...] = RARE_GALAXY_CLASSES + ARTIFACT_CLASSES
#: Every class, bulk first.
CLASSES: tuple[str, ...] = (BULK,) + RARE_CLASSES
#: Default share of the survey of each rare class: 0.3% each, so the ten rare classes make 3%
#: and the bulk 97%; a 10,000-galaxy survey has 30 of each.
DEFAULT_FRACTIONS: dict[str, float] = {c: 0.003 for c in RARE_CLASSES}


def class_counts(n_galaxies: int, fractions: dict[str, float] | None = None) -> dict[str, int]:
    """Number of galaxies of each class: ``round(fraction * n)`` but at least one of every rare
    class with a non-zero fraction; the bulk takes the rest. ``fractions`` updates
    :data:`DEFAULT_FRACTIONS` (set a class to 0 to leave it out)."""
    fr = dict(DEFAULT_FRACTIONS)
    for name, f in (fractions or {}).items():
        if name not in fr:
            raise InputError(f"unknown rare class {name!r}; known: {', '.join(RARE_CLASSES)}")
        if not 0.0 <= float(f) < 1.0:
            raise InputError(f"fraction of {name!r} must be in [0, 1), got {f}")
        fr[name] = float(f)
    if sum(fr.values()) >= 1.0:
        raise InputError(f"rare class fractions sum to {sum(fr.values()):g}; they must leave room for the bulk")
    counts = {c: (max(1, int(round(f * n_galaxies))) if f > 0 else 0) for c, f in fr.items()}
    rare = sum(counts.values())
    if rare >= n_galaxies:
        raise InputError(f"--n-galaxies {n_galaxies} is too small for {rare} planted rare galaxies "
                         f"(at least one per class); use at least {rare + 1}")
    return {BULK: n_galaxies - rare, **counts}


def assign_classes(n_galaxies: int, seed: int, fractions: dict[str, float] | None = None) -> np.ndarray:
    """(n_galaxies,) array of class names, in exact :func:`class_counts` proportions, shuffled."""
    counts = class_counts(n_galaxies, fractions)
    labels = np.concatenate([np.full(k, c, dtype=object) for c, k in counts.items()])
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    return labels[rng.permutation(n_galaxies)]


def galaxy_rng(seed: int, index: int, stream: int = 1) -> np.random.Generator:
    """The generator of galaxy ``index``: stream 1 for its parameters, 2 for its votes."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))


def sample_galaxy(cls: str, seed: int, index: int, size: int = 64,
                  pixel_scale: float = PIXEL_SCALE) -> tuple[dict, dict]:
    """Scene and generating parameters of galaxy ``index`` of class ``cls`` -> (scene, info).

    The galaxy itself depends only on (``cls``, ``seed``, ``index``); the cutout's size
    (pixels) and ``pixel_scale`` (arcsec) set how much of the field around it is filled.
    """
    rng = galaxy_rng(seed, index)
    half = 0.5 * size * pixel_scale
    extra: dict = {}
    if cls == BULK:
        comps, info = sample_bulk(rng)
    elif cls in RARE_SAMPLERS:
        comps, info = RARE_SAMPLERS[cls](rng)
    elif cls in ARTIFACT_SAMPLERS:
        comps, info, extra = ARTIFACT_SAMPLERS[cls](rng, half)
    else:
        raise InputError(f"unknown class {cls!r}; known: {', '.join(CLASSES)}")
    field_rng = galaxy_rng(seed, index, stream=3)  # the field does not disturb the galaxy's draws
    others = neighbours(field_rng, half)
    comps = comps + others
    info["n_neighbours"] = len(others)
    if field_rng.random() < STAR_HALO_RATE:
        comps += star_halo(field_rng, half)
        info["star_halo"] = True
    scene = dict(size=int(size), pixel_scale=float(pixel_scale), seed=int(field_rng.integers(2**31)),
                 components=comps, **conditions(field_rng, pixel_scale), **extra)
    return scene, info
