"""Search parameters: one dataclass, its defaults (the paper's), and TOML round-trips.

Every parameter of ``raregal search`` lives in :class:`SearchConfig`. A run writes the
config it used to ``RUN_DIR/config.toml``; ``raregal search --config RUN_DIR/config.toml``
reads it back. Unknown keys and values of the wrong type fail early, naming the key.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from raregal.discovery.hdbscan_leaves import BACKENDS
from raregal.discovery.distances import METRICS
from raregal.errors import InputError
from raregal.validation import Boolean, Fraction, Integer, Number, Options, Seed, Text, check_params, plain

#: UMAP layouts: ``auto`` (on the CPU, for the metrics the deterministic graph supports:
#: umap-learn's on the exact graph below 8,192 rows, ``deterministic`` above; both the same at any
#: thread count), umap-learn's (one thread with a seed; above 8,192 rows NN-descent's graph depends
#: on the thread count), or raregal's thread-count-independent one. ``summary.json`` records the
#: layout used (``layout``).
LAYOUTS = ("auto", "deterministic", "umap-learn")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class SearchConfig:
    """Parameters of a rare-class search. Defaults are those of the paper.

    Pre-filter: drop ``smooth >= smooth_cut``, ``edge-on >= edge_on_cut`` and
    ``artifact >= artifact_cut`` (the last skipped when ``keep_artifacts``). Beyond the paper,
    ``keep_disturbed`` (off: None) keeps smooth galaxies whose predicted disturbance + merger
    fractions reach it (shells, streams), see :func:`raregal.discovery.prefilter.paper_cuts`. ``campaign``
    (``dr12``, ``dr5``, ``dr8``, ``gz2``) picks whose fraction columns the cuts read, see
    :func:`raregal.discovery.prefilter.campaign_columns`.
    UMAP: ``n_neighbors``, ``n_components`` (the clustering space), ``umap_init``,
    ``umap_n_epochs`` (None: umap-learn's default), ``umap_min_dist``; ``map_2d`` adds a 2-D map
    for pictures. HDBSCAN: ``min_samples``, ``min_cluster_size``, ``cluster_selection_method``
    (``leaf`` as in the paper) on ``hdbscan_backend``; ``device="cuda"`` runs both on cuML. ``seed`` fixes every stochastic step.
    Beyond the paper: ``stability`` repeats of UMAP + HDBSCAN with seeds ``seed+1…`` score each
    cluster (0: off; clusters below ``unstable_below`` are flagged, see :mod:`raregal.discovery.checks.stability`);
    merge suggestions use ``merge_max_tree_distance`` and ``merge_max_centroid_ratio``
    (:mod:`raregal.discovery.checks.merge`). ``layout="deterministic"`` (beyond the paper; what the default ``"auto"`` chooses above 8,192
    rows on the CPU for the euclidean, cosine and correlation metrics) uses a thread-independent k-NN graph and
    :mod:`raregal.discovery.deterministic_umap`'s parallel optimiser: the same seed gives the same bits at any thread count.
    """

    n_neighbors: int = 50
    n_components: int = 5
    min_samples: int = 300
    min_cluster_size: int = 10
    cluster_selection_method: str = "leaf"
    seed: int = 0
    smooth_cut: float = 0.5
    edge_on_cut: float = 0.3
    artifact_cut: float = 0.3
    keep_artifacts: bool = False
    keep_disturbed: float | None = None  # beyond the paper: the smooth cut keeps disturbed galaxies
    campaign: str | None = None  # the pre-filter's GZ campaign (dr8, ...); None: GZ DESI's columns or the newest
    drop_invalid: bool = False
    features: str | None = None
    metric: str = "euclidean"
    umap_init: str = "pca"
    umap_n_epochs: int | None = None
    umap_min_dist: float = 0.1
    map_2d: bool = True
    map_2d_epochs: int | None = 50
    hdbscan_backend: str = "fast_hdbscan"
    device: str = "cpu"  # "cuda": cuML's GPU UMAP and HDBSCAN (needs raregal[gpu])
    report: bool = True
    stability: int = 0
    unstable_below: float = 0.6
    merge_max_tree_distance: int = 2
    merge_max_centroid_ratio: float = 0.25
    layout: str = "auto"  # see LAYOUTS: the same clusters at any thread count where possible

    def validate(self) -> "SearchConfig":
        """Check every key against :data:`CONSTRAINTS`; raise :class:`InputError` naming the first bad key."""
        check_params(dataclasses.asdict(self), CONSTRAINTS)
        for f in fields(self):  # numpy scalars (a loop over np.arange) as Python values: the run's TOML takes them
            setattr(self, f.name, plain(getattr(self, f.name)))
        return self

    def estimator_params(self) -> dict:
        """Keyword arguments of :class:`raregal.discovery.estimator.RareClassSearch` for these settings."""
        return {est: getattr(self, key) for key, est in ESTIMATOR_KEYS.items()}

    def to_dict(self) -> dict:
        """The settings as a dict (``campaign`` only when set; ``layout`` always, see :func:`load_config`)."""
        out = dataclasses.asdict(self)
        if out["campaign"] is None:
            del out["campaign"]
        return out


#: What each key may be (:mod:`raregal.validation`): the one table that ``SearchConfig.validate``,
#: ``--config`` files and :class:`raregal.RareClassSearch` (its keys of :data:`ESTIMATOR_KEYS`) check.
CONSTRAINTS = {
    "n_neighbors": Integer(2), "n_components": Integer(1), "min_samples": Integer(1),
    "min_cluster_size": Integer(2), "cluster_selection_method": Options("leaf", "eom"), "seed": Seed(),
    "smooth_cut": Fraction(slack=1e-4), "edge_on_cut": Fraction(slack=1e-4), "artifact_cut": Fraction(slack=1e-4),
    "keep_artifacts": Boolean(),
    "keep_disturbed": Fraction(none_ok=True), "campaign": Text(none_ok=True),
    "drop_invalid": Boolean(), "features": Text(none_ok=True), "metric": Options(*METRICS),
    "umap_init": Options("spectral", "pca", "random"), "umap_n_epochs": Integer(1, none_ok=True),
    "umap_min_dist": Number(0.0), "map_2d": Boolean(), "map_2d_epochs": Integer(1, none_ok=True),
    "hdbscan_backend": Options(*BACKENDS), "device": Options("cpu", "cuda"), "report": Boolean(),
    "stability": Integer(0, 100), "unstable_below": Fraction(), "merge_max_tree_distance": Integer(0),
    "merge_max_centroid_ratio": Number(0.0, inf_ok=True),  # inf: no limit
    "layout": Options(*LAYOUTS),
}
#: The keys the estimator takes, under their estimator names (``seed`` is scikit-learn's ``random_state``).
ESTIMATOR_KEYS = {"n_neighbors": "n_neighbors", "n_components": "n_components", "min_samples": "min_samples",
                  "min_cluster_size": "min_cluster_size", "cluster_selection_method": "cluster_selection_method",
                  "metric": "metric", "umap_init": "umap_init", "umap_n_epochs": "umap_n_epochs",
                  "umap_min_dist": "umap_min_dist", "map_2d": "map_2d", "map_2d_epochs": "map_2d_epochs",
                  "hdbscan_backend": "hdbscan_backend", "device": "device", "layout": "layout", "seed": "random_state"}

_TYPES = {f.name: f.type for f in fields(SearchConfig)}
#: The keys every run folder's config.toml holds (TOML has no null, so ``None`` values are left out).
_ALWAYS_WRITTEN = {k for k, t in _TYPES.items() if not str(t).endswith("| None")}


def config_from_dict(values: dict, base: SearchConfig | None = None, where: str = "config") -> SearchConfig:
    """Override ``base`` (default: the paper's config) with ``values``; unknown keys are errors."""
    known = set(_TYPES)
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known keys: "
                         f"{', '.join(sorted(known))}")
    check_params(values, CONSTRAINTS, where=None if where == "config" else where)
    return dataclasses.replace(base or SearchConfig(), **values).validate()


def load_config(path: str | os.PathLike) -> SearchConfig:
    """Read a TOML config (flat keys, or under a ``[search]`` table)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{path}: not valid TOML: {err}") from None
    if "search" in data and isinstance(data["search"], dict):
        rest = sorted(set(data) - {"search"})
        if rest:
            raise InputError(f"{path}: unknown key(s) {rest} beside the [search] table")
        data = data["search"]
    if "layout" not in data and _ALWAYS_WRITTEN - {"layout"} <= set(data):
        # every key a run writes but layout: a run folder's record from before layout="auto", which
        # left out layout="umap-learn" as the default of the day; repeat it as it was made
        data = {**data, "layout": "umap-learn"}
    return config_from_dict(data, where=str(path))
