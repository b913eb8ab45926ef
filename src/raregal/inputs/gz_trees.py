"""Galaxy Zoo decision trees ("schemas"), as data.

A schema is a Galaxy Zoo decision tree as Zoobot sees it: questions, their answers, and for each
question the answer that must be chosen for it to be asked. The facts are those of
``galaxy_datasets.shared.label_metadata``:

* ``desi``: GZ DESI, 10 questions, 34 answers, plain question names (``bar_strong``); the default.
* ``decals-dr12``, ``decals-dr5``, ``decals-dr8``: the "ortho" schemas of the GZ DECaLS campaigns,
  each question suffixed with its campaign (``bar-dr5_strong``); DR1/2 asked an older tree (30
  answers: ``bar-dr12_yes/no``, three bulge sizes, other merging answers), DR5 and DR8 34 each.
* ``decals-all-campaigns``: the three together (98 answers), what Zoobot's DECaLS models predict;
  a galaxy has votes in one campaign only.
* ``gz2``: Galaxy Zoo 2 ortho (30 answers).

Column names follow Zoobot: ``<question>_<answer>`` holds vote counts and
``<question>_<answer>_fraction`` the vote fraction *within that question* (conditional on the
question being asked). Module-level names (:data:`QUESTIONS`, :data:`TREE`, :data:`ANSWERS`,
:data:`FRACTIONS`, :data:`SMOOTH_FRACTION`, …) are those of the default ``desi`` schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raregal.errors import InputError


@dataclass(frozen=True)
class Question:
    """One question of a tree: its name, answer columns and position in the flat answer vector."""

    name: str
    answers: tuple[str, ...]  # full answer column names, e.g. "bar_strong"
    start: int  # index of the first answer in the schema's answers
    depends_on: str | None
    campaign: str | None = None  # "dr8", "gz2", … (None: a schema without campaigns)

    @property
    def stop(self) -> int:
        return self.start + len(self.answers)

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def base(self) -> str:
        """The question without its campaign suffix (``bar`` for ``bar-dr8``)."""
        return self.name[: -len(self.campaign) - 1] if self.campaign else self.name


@dataclass(frozen=True)
class Schema:
    """A named Galaxy Zoo decision tree.

    ``questions``: question -> short answer names, in the head's output order; ``dependencies``:
    question -> the answer column that must be chosen for it to be asked (None: always asked);
    ``campaigns``: the campaign suffixes of the question names, oldest first (``()`` when the
    questions carry none).
    """

    name: str
    title: str
    questions: dict[str, tuple[str, ...]]
    dependencies: dict[str, str | None]
    campaigns: tuple[str, ...] = ()
    tree: list[Question] = field(init=False, repr=False, compare=False)
    answers: list[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        tree, answers = [], []
        for name, short in self.questions.items():
            cols = tuple(f"{name}_{a}" for a in short)
            campaign = next((c for c in self.campaigns if name.endswith(f"-{c}")), None)
            tree.append(Question(name, cols, len(answers), self.dependencies[name], campaign))
            answers.extend(cols)
        object.__setattr__(self, "tree", tree)
        object.__setattr__(self, "answers", answers)

    @property
    def fractions(self) -> list[str]:
        """The vote-fraction columns, in the head's output order."""
        return [f"{a}_fraction" for a in self.answers]

    @property
    def newest_campaign(self) -> str | None:
        return self.campaigns[-1] if self.campaigns else None

    def question(self, name: str) -> Question:
        """The :class:`Question` called ``name`` (KeyError naming the known questions otherwise)."""
        for q in self.tree:
            if q.name == name:
                return q
        raise KeyError(f"unknown question {name!r} of the {self.title} schema; known: {', '.join(self.questions)}")

    def ancestors(self, name: str) -> list[str]:
        """Answer columns that must all be chosen for question ``name`` to be asked, root first."""
        chain = []
        dep = self.dependencies[name]
        while dep is not None:
            chain.append(dep)
            dep = self.dependencies[dep.rsplit("_", 1)[0]]
        return chain[::-1]

    def check_campaign(self, campaign: str | None, param: str = "campaign") -> str | None:
        """``campaign`` checked against this schema's (None: the newest one)."""
        if campaign is None:
            return self.newest_campaign
        if not self.campaigns:
            raise InputError(f"{param}={campaign!r}: the {self.title} tree names no survey campaigns (its "
                             "columns carry no -dr8 etc.)", param=param)
        if campaign not in self.campaigns:
            raise InputError(f"{param}={campaign!r} is not one of the {self.title} tree's: "
                             f"{', '.join(self.campaigns)}", param=param)
        return campaign

    def fraction_column(self, question: str, answer: str, campaign: str | None = None) -> str:
        """The fraction column of ``answer`` to the base ``question`` (``bar``, ``strong``) in ``campaign``.

        ``campaign`` None: the newest campaign of the schema (or none, for a schema without campaigns).
        """
        campaign = self.check_campaign(campaign)
        name = f"{question}-{campaign}" if campaign else question
        column = f"{name}_{answer}"
        if column not in self.answers:
            raise KeyError(f"{column!r} is not an answer of the {self.title} schema")
        return f"{column}_fraction"

    def prefilter_columns(self, campaign: str | None = None) -> dict[str, str]:
        """The smooth, edge-on and artifact fraction columns the pre-filter reads, for ``campaign``."""
        return {"smooth": self.fraction_column("smooth-or-featured", "smooth", campaign),
                "edge_on": self.fraction_column("disk-edge-on", "yes", campaign),
                "artifact": self.fraction_column("smooth-or-featured", "artifact", campaign)}

    def describe(self) -> dict:
        """The schema as stored in a model's description (to check a loaded head predicts these answers)."""
        return {"name": self.name, "questions": {k: list(v) for k, v in self.questions.items()},
                "dependencies": dict(self.dependencies), "answers": list(self.answers)}


# --- the facts of galaxy_datasets.shared.label_metadata -------------------------------------------

_DR5 = {
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
_DR12 = {  # GZ DECaLS DR1/2 asked an older tree
    "smooth-or-featured": ("smooth", "featured-or-disk", "artifact"),
    "disk-edge-on": ("yes", "no"),
    "has-spiral-arms": ("yes", "no"),
    "bar": ("yes", "no"),
    "bulge-size": ("dominant", "obvious", "none"),
    "how-rounded": ("completely", "in-between", "cigar-shaped"),
    "edge-on-bulge": ("boxy", "none", "rounded"),
    "spiral-winding": ("tight", "medium", "loose"),
    "spiral-arm-count": ("1", "2", "3", "4", "more-than-4"),
    "merging": ("neither", "tidal-debris", "both", "merger"),
}
_DECALS_DEPENDS = {  # question -> (question, answer) that must be chosen; the same in every DECaLS campaign
    "smooth-or-featured": None,
    "disk-edge-on": ("smooth-or-featured", "featured-or-disk"),
    "has-spiral-arms": ("disk-edge-on", "no"),
    "bar": ("disk-edge-on", "no"),
    "bulge-size": ("disk-edge-on", "no"),
    "how-rounded": ("smooth-or-featured", "smooth"),
    "edge-on-bulge": ("disk-edge-on", "yes"),
    "spiral-winding": ("has-spiral-arms", "yes"),
    "spiral-arm-count": ("has-spiral-arms", "yes"),
    "merging": None,
}
_GZ2 = {
    "smooth-or-featured": ("smooth", "featured-or-disk", "artifact"),
    "disk-edge-on": ("yes", "no"),
    "has-spiral-arms": ("yes", "no"),
    "bar": ("yes", "no"),
    "bulge-size": ("dominant", "obvious", "just-noticeable", "no"),
    "something-odd": ("yes", "no"),
    "how-rounded": ("round", "in-between", "cigar"),
    "bulge-shape": ("round", "boxy", "no-bulge"),
    "spiral-winding": ("tight", "medium", "loose"),
    "spiral-arm-count": ("1", "2", "3", "4", "more-than-4", "cant-tell"),
}
_GZ2_DEPENDS = {
    "smooth-or-featured": None,
    "disk-edge-on": ("smooth-or-featured", "featured-or-disk"),
    "has-spiral-arms": ("smooth-or-featured", "featured-or-disk"),
    "bar": ("smooth-or-featured", "featured-or-disk"),
    "bulge-size": ("smooth-or-featured", "featured-or-disk"),
    "something-odd": None,
    "how-rounded": ("smooth-or-featured", "smooth"),
    "bulge-shape": ("disk-edge-on", "yes"),
    "spiral-winding": ("has-spiral-arms", "yes"),
    "spiral-arm-count": ("has-spiral-arms", "yes"),
}


def _campaign_tree(pairs: dict, depends: dict, campaign: str | None) -> tuple[dict, dict]:
    """``pairs``/``depends`` with every question suffixed ``-campaign`` (None: unchanged)."""
    sfx = f"-{campaign}" if campaign else ""
    questions = {f"{q}{sfx}": tuple(a) for q, a in pairs.items()}
    deps = {f"{q}{sfx}": (None if d is None else f"{d[0]}{sfx}_{d[1]}") for q, d in depends.items()}
    return questions, deps


def _make(name: str, title: str, parts: list[tuple[dict, dict, str | None]]) -> Schema:
    questions, deps = {}, {}
    for pairs, depends, campaign in parts:
        q, d = _campaign_tree(pairs, depends, campaign)
        questions.update(q)
        deps.update(d)
    campaigns = tuple(c for _, _, c in parts if c)
    return Schema(name, title, questions, deps, campaigns)


DESI = _make("desi", "GZ DESI", [(_DR5, _DECALS_DEPENDS, None)])
DECALS_DR12 = _make("decals-dr12", "GZ DECaLS DR1/2", [(_DR12, _DECALS_DEPENDS, "dr12")])
DECALS_DR5 = _make("decals-dr5", "GZ DECaLS DR5", [(_DR5, _DECALS_DEPENDS, "dr5")])
DECALS_DR8 = _make("decals-dr8", "GZ DECaLS DR8", [(_DR5, _DECALS_DEPENDS, "dr8")])
DECALS_ALL = _make("decals-all-campaigns", "GZ DECaLS, all campaigns (DR1/2, DR5, DR8)",
                   [(_DR12, _DECALS_DEPENDS, "dr12"), (_DR5, _DECALS_DEPENDS, "dr5"), (_DR5, _DECALS_DEPENDS, "dr8")])
GZ2 = _make("gz2", "Galaxy Zoo 2", [(_GZ2, _GZ2_DEPENDS, "gz2")])

#: Every schema raregal knows, by name.
SCHEMAS: dict[str, Schema] = {s.name: s for s in (DESI, DECALS_DR12, DECALS_DR5, DECALS_DR8, DECALS_ALL, GZ2)}
#: Other names a schema goes by (label_metadata's variable names, older raregal descriptions).
ALIASES = {"gz-desi": "desi", "gz_desi": "desi", "decals_dr12_ortho": "decals-dr12", "dr12": "decals-dr12",
           "decals_dr5_ortho": "decals-dr5", "dr5": "decals-dr5", "decals_dr8_ortho": "decals-dr8",
           "dr8": "decals-dr8", "decals_all_campaigns_ortho": "decals-all-campaigns", "all-campaigns": "decals-all-campaigns",
           "gz2_ortho": "gz2"}
DEFAULT = DESI
#: Every campaign suffix known to some schema.
CAMPAIGNS = tuple(dict.fromkeys(c for s in SCHEMAS.values() for c in s.campaigns))


def get(name: str | Schema | None, param: str = "schema") -> Schema:
    """The schema called ``name`` (a Schema passes through; None: the default ``desi``)."""
    if name is None:
        return DEFAULT
    if isinstance(name, Schema):
        return name
    key = ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if key not in SCHEMAS:
        raise InputError(f"{param}={name!r}: unknown Galaxy Zoo decision tree; known: {', '.join(SCHEMAS)}",
                         param=param)
    return SCHEMAS[key]


def by_width(n_answers: int, param: str = "schema") -> Schema:
    """The schema of a head predicting ``n_answers`` concentrations.

    The default (``desi``) wins when its width fits (DR5, DR8 and DESI ask the same 34-answer tree);
    otherwise the one schema of that width, and an error listing the candidates when several fit.
    """
    fits = [s for s in SCHEMAS.values() if len(s.answers) == n_answers]
    if DEFAULT in fits:
        return DEFAULT
    if len(fits) == 1:
        return fits[0]
    widths = ", ".join(f"{s.name} ({len(s.answers)})" for s in SCHEMAS.values())
    if not fits:
        raise InputError(f"no Galaxy Zoo decision tree has {n_answers} answers; known: {widths}")
    raise InputError(f"{n_answers} answers fit several Galaxy Zoo trees ({', '.join(s.name for s in fits)}); "
                     f"name the one the head predicts with {param}=NAME", param=param)


def by_answers(answers) -> Schema | None:
    """The schema whose answer columns are exactly ``answers``, in order (None: no such schema)."""
    answers = list(answers)
    return next((s for s in SCHEMAS.values() if s.answers == answers), None)


def _campaign_of_column(column: str) -> str | None:
    """The campaign suffix a ``<question>-<campaign>_<answer>`` column carries (None: none)."""
    question = column.split("_", 1)[0]
    if "-" not in question:
        return None
    return question.rsplit("-", 1)[1]


def unknown_campaign_columns(columns) -> list[str]:
    """Columns that look like a known question with an unknown campaign (``bar-dr9_strong``)."""
    bases = {q.base for s in SCHEMAS.values() for q in s.tree}
    out = []
    for col in columns:
        question = str(col).split("_", 1)[0]
        if "_" not in str(col) or "-" not in question:
            continue
        base, campaign = question.rsplit("-", 1)
        if base in bases and campaign not in CAMPAIGNS and question not in bases:
            out.append(str(col))
    return out


def infer(columns, fractions: bool = False, param: str = "schema") -> Schema:
    """The schema a table's vote columns (``fractions``: its ``_fraction`` columns) belong to.

    Chooses the schemas whose every answer column is present; among several, the largest (all
    campaigns over one) when it covers all the others, the one schema that holds them all (the
    complete columns of DR5 and DR8: all campaigns), the default ``desi`` when its columns are
    present, else an error naming the candidates. A column of a known question with an unknown
    campaign (``smooth-or-featured-dr9_smooth``) is an error; no schema's columns at all is one too.
    """
    columns = [str(c) for c in columns]
    have = set(columns)
    bad = unknown_campaign_columns(c[: -len("_fraction")] if c.endswith("_fraction") else c for c in columns)
    if bad:
        raise InputError(f"column(s) {', '.join(bad[:5])} name a campaign raregal does not know; known campaigns: "
                         f"{', '.join(CAMPAIGNS)} (or none, for GZ DESI columns like smooth-or-featured_smooth)",
                         )
    cols = (lambda s: s.fractions) if fractions else (lambda s: s.answers)
    full = [s for s in SCHEMAS.values() if all(c in have for c in cols(s))]
    if DEFAULT in full:
        return DEFAULT
    if len(full) == 1:
        return full[0]
    if full:
        biggest = max(full, key=lambda s: len(s.answers))
        if all(set(cols(s)) <= set(cols(biggest)) for s in full):
            return biggest
        union = {c for s in full for c in cols(s)}
        covering = [s for s in SCHEMAS.values() if union <= set(cols(s))]
        if len(covering) == 1:  # complete DR5 and DR8 columns: the all-campaigns tree, DR1/2's left at 0 votes
            return covering[0]
        raise InputError(f"the columns fit several Galaxy Zoo trees ({', '.join(s.name for s in full)}); choose "
                         f"one with {param}=NAME", param=param)
    partial = sorted(((sum(c in have for c in cols(s)), s) for s in SCHEMAS.values()), key=lambda t: -t[0])
    if partial[0][0] == 0:
        what = "vote-fraction" if fractions else "vote-count"
        raise InputError(f"no Galaxy Zoo {what} columns found (e.g. {cols(DEFAULT)[0]} or {cols(DECALS_DR8)[0]}); "
                         f"known trees: {', '.join(SCHEMAS)}")
    n, best = partial[0]
    tied = [s.name for k, s in partial if k == n]
    if len(tied) > 1:
        raise InputError(f"the columns fit several Galaxy Zoo trees equally ({', '.join(tied)}: {n} of their "
                         f"columns each); choose one with {param}=NAME", param=param)
    return best


def infer_fractions(columns) -> Schema | None:
    """The schema whose every fraction column is in ``columns`` (default first), or None."""
    have = set(map(str, columns))
    full = [s for s in SCHEMAS.values() if all(c in have for c in s.fractions)]
    if not full:
        return None
    return DEFAULT if DEFAULT in full else max(full, key=lambda s: len(s.answers))


# --- the default schema's names, as module constants (existing code uses these) ------------------

#: question -> its answers, in Zoobot's order (the order of the Dirichlet head's outputs).
QUESTIONS: dict[str, tuple[str, ...]] = DESI.questions
#: question -> the answer column that must be chosen for the question to be asked (None: always asked).
DEPENDENCIES: dict[str, str | None] = DESI.dependencies
#: Every question, in order, with its slice into the flat answer vector.
TREE: list[Question] = DESI.tree
#: The 34 answer columns (vote counts), in the Dirichlet head's output order.
ANSWERS: list[str] = DESI.answers
#: The 34 vote-fraction columns, same order.
FRACTIONS: list[str] = DESI.fractions
#: The three fractions the paper's pre-filter uses.
SMOOTH_FRACTION = "smooth-or-featured_smooth_fraction"
EDGE_ON_FRACTION = "disk-edge-on_yes_fraction"
ARTIFACT_FRACTION = "smooth-or-featured_artifact_fraction"


def question(name: str) -> Question:
    """Return the default schema's :class:`Question` called ``name``."""
    return DESI.question(name)


def ancestors(name: str) -> list[str]:
    """Answer columns that must all be chosen for question ``name`` of the default schema to be asked."""
    return DESI.ancestors(name)
