"""Galaxy Zoo DESI volunteer votes drawn from a synthetic galaxy's true morphology.

:func:`answer_probabilities` turns a galaxy's generating parameters (the ``info`` dict of
:mod:`raregal.synth.galaxies`) into, for every question of the decision tree
(:mod:`raregal.inputs.gz_trees`), the probability that a volunteer who is asked it picks each answer:
what a careful volunteer would answer, blurred the way real volunteers disagree. :func:`draw_votes`
then simulates the volunteers walking down the tree: ``N`` (5-40) volunteers answer the first
question; a question is put to exactly the volunteers who chose its parent answer (so each
question's answers sum to its parent answer's count), each galaxy's probabilities scattered by
a Dirichlet draw so no two galaxies of a kind have identical vote fractions.
"""

from __future__ import annotations

import math

import numpy as np

from raregal.inputs.gz_trees import ANSWERS, TREE, ancestors

#: How tightly a galaxy's vote probabilities follow its kind's (Dirichlet concentration).
CONCENTRATION = 25.0
#: Range of the number of volunteers who classify a galaxy.
VOLUNTEERS = (5, 40)


def _soft(value: float, centres, width: float) -> np.ndarray:
    """Probabilities over ordered bins: a Gaussian kernel of ``width`` around ``value``."""
    c = np.asarray(centres, dtype=float)
    w = np.exp(-0.5 * ((value - c) / width) ** 2) + 1e-3
    return w / w.sum()


def _onehot(index: int, n: int, peak: float) -> np.ndarray:
    p = np.full(n, (1.0 - peak) / (n - 1))
    p[index] = peak
    return p


def answer_probabilities(info: dict) -> dict[str, np.ndarray]:
    """question -> probabilities of its answers (in :data:`raregal.inputs.gz_trees.QUESTIONS` order)."""
    art = float(np.clip(info.get("artifact", 0.0), 0.0, 1.0))
    feat = float(np.clip(info.get("featured", 0.0), 0.0, 1.0))
    edge_on = bool(info.get("edge_on", False))
    n_arms = int(info.get("n_arms", 0))
    q = info.get("axis_ratio", 1.0)
    q = 1.0 if q is None or math.isnan(q) else float(q)
    bulge = info.get("bulge_frac", 0.2)
    bulge = 0.2 if bulge is None or math.isnan(bulge) else float(bulge)
    pitch = info.get("pitch_deg", math.nan)

    p = {}
    a = 0.02 + 0.9 * art
    p["smooth-or-featured"] = np.array([(1 - a) * (1 - feat), (1 - a) * feat, a])
    p["disk-edge-on"] = np.array([0.93, 0.07]) if edge_on else np.array([0.03 + 0.2 * (q < 0.35), 0.97 - 0.2 * (q < 0.35)])
    p["has-spiral-arms"] = np.array([0.9, 0.1]) if n_arms != 0 else np.array([0.08, 0.92])
    p["bar"] = {0: np.array([0.03, 0.1, 0.87]), 1: np.array([0.15, 0.6, 0.25]),
                2: np.array([0.75, 0.2, 0.05])}[int(info.get("bar", 0))]
    p["bulge-size"] = _soft(bulge, [0.75, 0.5, 0.3, 0.12, 0.01], 0.09)
    p["how-rounded"] = _soft(q, [0.92, 0.65, 0.3], 0.12)
    p["edge-on-bulge"] = np.array([0.1, 0.8, 0.1]) if bulge < 0.05 else np.array([0.15, 0.1, 0.75])
    p["spiral-winding"] = _soft(pitch, [10.0, 20.0, 32.0], 6.0) if not math.isnan(pitch) else np.full(3, 1 / 3)
    if n_arms == -1:
        p["spiral-arm-count"] = np.array([0.15, 0.2, 0.05, 0.02, 0.03, 0.55])
    else:
        idx = {1: 0, 2: 1, 3: 2, 4: 3}.get(n_arms, 4)
        p["spiral-arm-count"] = 0.85 * _onehot(idx, 6, 0.75) + 0.15 * _onehot(5, 6, 1.0)
    p["merging"] = _onehot(int(info.get("disturbance", 0)), 4, 0.85)
    return {k: v / v.sum() for k, v in p.items()}


def draw_votes(probs: dict[str, np.ndarray], rng: np.random.Generator,
               n_volunteers: int | None = None) -> dict[str, int]:
    """Simulate volunteers answering the tree -> ``{answer column: count}`` for all 34 answers.

    ``n_volunteers`` (default: uniform in :data:`VOLUNTEERS`) answer the first question and
    ``merging``; every other question is answered by exactly those who chose its parent answer.
    """
    n = int(rng.integers(VOLUNTEERS[0], VOLUNTEERS[1] + 1)) if n_volunteers is None else int(n_volunteers)
    counts: dict[str, int] = {}
    for question in sorted(TREE, key=lambda q: len(ancestors(q.name))):  # parents first
        asked = n if question.depends_on is None else counts[question.depends_on]
        p = rng.dirichlet(CONCENTRATION * probs[question.name] + 0.05)
        votes = rng.multinomial(asked, p) if asked > 0 else np.zeros(len(question.answers), dtype=int)
        counts.update(zip(question.answers, (int(v) for v in votes)))
    return {a: counts[a] for a in ANSWERS}


def galaxy_votes(info: dict, rng: np.random.Generator) -> dict[str, int]:
    """Vote counts for one galaxy with generating parameters ``info``."""
    return draw_votes(answer_probabilities(info), rng)

