"""The Galaxy Zoo DESI decision tree, as data.

These are the facts of Zoobot's ``desi`` schema (``galaxy_datasets.shared.label_metadata``):
10 questions, 34 answers, and for each question the answer that must be chosen for it to be
asked. Column names follow Zoobot: ``<question>_<answer>`` holds vote counts and
``<question>_<answer>_fraction`` the vote fraction *within that question* (conditional on the
question being asked). raregal derives every list and index from :data:`QUESTIONS` and
:data:`DEPENDENCIES` below; nothing else hard-codes the tree.
"""

from __future__ import annotations

from dataclasses import dataclass

#: question -> its answers, in Zoobot's order (the order of the Dirichlet head's outputs).
QUESTIONS: dict[str, tuple[str, ...]] = {
    "smooth-or-featured": ("smooth", "featured-or-disk", "artifact"),
    "disk-edge-on": ("yes", "no"),
    "has-spiral-arms": ("yes", "no"),
    "bar": ("strong", "weak", "no"),
    "bulge-size": ("dominant", "large", "moderate", "small", "none"),
    "how-rounded": ("round", "in-between", "cigar-shaped"),
    "edge-on-bulge": ("boxy", "none", "rounded"),
    "spiral-winding": ("tight", "medium", "loose"),
    "spiral-arm-count": ("1", "2", "3", "4", "more-than-4", "cant-tell"),
    "merging": ("none", "minor-disturbance", "major-disturbance", "merger"),
}

#: question -> the answer column that must be chosen for the question to be asked (None: always asked).
DEPENDENCIES: dict[str, str | None] = {
    "smooth-or-featured": None,
    "disk-edge-on": "smooth-or-featured_featured-or-disk",
    "has-spiral-arms": "disk-edge-on_no",
    "bar": "disk-edge-on_no",
    "bulge-size": "disk-edge-on_no",
    "how-rounded": "smooth-or-featured_smooth",
    "edge-on-bulge": "disk-edge-on_yes",
    "spiral-winding": "has-spiral-arms_yes",
    "spiral-arm-count": "has-spiral-arms_yes",
    "merging": None,
}

#: The three fractions the paper's pre-filter uses.
SMOOTH_FRACTION = "smooth-or-featured_smooth_fraction"
EDGE_ON_FRACTION = "disk-edge-on_yes_fraction"
ARTIFACT_FRACTION = "smooth-or-featured_artifact_fraction"


@dataclass(frozen=True)
class Question:
    """One question of the tree: its name, answer columns and position in the flat answer vector."""

    name: str
    answers: tuple[str, ...]  # full answer column names, e.g. "bar_strong"
    start: int  # index of the first answer in :data:`ANSWERS`
    depends_on: str | None

    @property
    def stop(self) -> int:
        return self.start + len(self.answers)

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


def _build() -> tuple[list[Question], list[str]]:
    questions, answers = [], []
    for name, short in QUESTIONS.items():
        cols = tuple(f"{name}_{a}" for a in short)
        questions.append(Question(name, cols, len(answers), DEPENDENCIES[name]))
        answers.extend(cols)
    return questions, answers


#: Every question, in order, with its slice into the flat answer vector.
TREE: list[Question]
#: The 34 answer columns (vote counts), in the Dirichlet head's output order.
ANSWERS: list[str]
TREE, ANSWERS = _build()
#: The 34 vote-fraction columns, same order.
FRACTIONS: list[str] = [f"{a}_fraction" for a in ANSWERS]


def question(name: str) -> Question:
    """Return the :class:`Question` called ``name`` (KeyError naming the known questions otherwise)."""
    for q in TREE:
        if q.name == name:
            return q
    raise KeyError(f"unknown Galaxy Zoo DESI question {name!r}; known: {', '.join(QUESTIONS)}")


def ancestors(name: str) -> list[str]:
    """Answer columns that must all be chosen for question ``name`` to be asked, root first."""
    chain = []
    dep = DEPENDENCIES[name]
    while dep is not None:
        chain.append(dep)
        dep = DEPENDENCIES[dep.rsplit("_", 1)[0]]
    return chain[::-1]
