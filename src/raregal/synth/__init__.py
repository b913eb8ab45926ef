"""A synthetic DESI Legacy Surveys-like galaxy survey with planted rare classes.

Real surveys cannot be downloaded everywhere and no public benchmark exists for finding rare
galaxy classes, so raregal makes its own: colour cutouts rendered with GalSim the Legacy
Surveys' way (g, r, z; Moffat PSF per band; sky noise at survey depth; asinh colour stretch)
of a bulk of ordinary galaxies and planted rare classes whose truth is known::

    from raregal.synth import make_survey
    catalog = make_survey(2000, "survey", seed=0)   # images + survey/catalog.parquet

Modules: :mod:`.bands` (survey constants, colour images), :mod:`.shapes` (arms, rings, tails,
shells, trails, ... on pixel grids), :mod:`.render` (scene -> g, r, z images with GalSim),
:mod:`.galaxies`, :mod:`.bulk`, :mod:`.rare`, :mod:`.artifacts` (what to draw), :mod:`.field`
(seeing, depth, neighbours), :mod:`.classes` (classes, proportions, seeding), :mod:`.votes`
(Galaxy Zoo DESI votes), :mod:`.survey` (the parallel survey), :mod:`.preview` (contact sheet).
"""

from raregal.synth.bands import BANDS, PIXEL_SCALE, to_rgb
from raregal.synth.bulk import BULK_SUBTYPES
from raregal.synth.classes import (ARTIFACT_CLASSES, BULK, CLASSES, DEFAULT_FRACTIONS, RARE_CLASSES, RARE_GALAXY_CLASSES,
                      assign_classes, class_counts, sample_galaxy)
from raregal.synth.preview import write_preview
from raregal.synth.render import render_scene
from raregal.synth.survey import DEFAULT_SIZE, make_survey
from raregal.synth.votes import answer_probabilities, draw_votes

__all__ = [
    "ARTIFACT_CLASSES", "BANDS", "BULK", "BULK_SUBTYPES", "CLASSES", "DEFAULT_FRACTIONS", "DEFAULT_SIZE",
    "PIXEL_SCALE", "RARE_CLASSES", "RARE_GALAXY_CLASSES", "answer_probabilities", "assign_classes",
    "class_counts", "draw_votes", "make_survey", "render_galaxy", "render_scene", "sample_galaxy",
    "to_rgb", "write_preview",
]


def render_galaxy(cls: str, seed: int, index: int, size: int = DEFAULT_SIZE, pixel_scale: float = PIXEL_SCALE,
                  noise: bool = True):
    """(3, size, size) float32 g, r, z image (nanomaggies) of galaxy ``index`` of class ``cls``
    in the survey with ``seed``: the pixels :func:`make_survey` stretches into its cutout."""
    scene, _ = sample_galaxy(cls, seed, index, size, pixel_scale)
    return render_scene(scene, noise=noise)
