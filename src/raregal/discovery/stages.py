"""Checkpoints of the search's stages: a killed run resumes from its last finished stage, with the same result.

A search of millions of galaxies takes hours, so :class:`RareClassSearch` with ``stages_dir``
(``RUN_DIR/.stages/`` for ``raregal search``) keeps each finished stage there: the k-NN graph
(``knn.npz``), the 5-D layout (``umap5.npz``), the 2-D map (``umap2.npz``) and HDBSCAN's clusters
(``hdbscan.npz``), each written whole or not at all. Each carries a key: a hash of the
representation's bytes and of the parameters that stage depends on (:data:`DEPENDS`). A rerun
loads every stage whose key matches and computes the rest, so a changed table or parameter
redoes exactly the stages it touches. With the default layout every stage is a deterministic
function of its inputs, so a resumed run has the same bits as one that was never stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zipfile
from pathlib import Path

import numpy as np

from raregal.timing import duration

log = logging.getLogger("raregal")

STAGES = ("knn", "umap5", "umap2", "hdbscan")
#: The parameters each stage depends on, beyond the representation itself (and its own stages before it).
DEPENDS = {
    "knn": ("n_neighbors", "metric", "layout", "seed"),
    "umap5": ("n_components", "umap_init", "umap_n_epochs", "umap_min_dist", "device"),
    "umap2": ("map_2d", "map_2d_epochs"),
    "hdbscan": ("min_samples", "min_cluster_size", "cluster_selection_method", "hdbscan_backend"),
}
#: Raised when a stage's code gives other bits for the same inputs, so a run left by an older raregal
#: is not resumed with a newer one's later stages (2: the layout's edge schedule in float32).
REVISION = {"knn": 1, "umap5": 2, "umap2": 2, "hdbscan": 1}
#: The stage each stage starts from (its key includes that stage's).
AFTER = {"knn": None, "umap5": "knn", "umap2": "umap5", "hdbscan": "umap5"}
#: For the estimate of the time left after each stage: (seconds at 1M galaxies on 2 cores, growth
#: exponent a: time ~ N^a), from ``benchmarks/scale_stages.py`` (1M and 8.7M, each stage whole and alone;
#: ``results/scale_stages_prefetch.json``).
#: The stages' shares change with N (the k-NN graph grows fastest), so the shares of one size mislead
#: at another; the measured seconds of the stages done scale the model to the machine.
COST = {"knn": (143.0, 1.46), "umap5": (442.5, 0.97), "umap2": (88.7, 1.01), "hdbscan": (158.5, 1.09)}


def stage_seconds(stage: str, n_rows: int) -> float:
    """The seconds :data:`COST` expects ``stage`` to take on ``n_rows`` galaxies (2 cores of the benchmark machine)."""
    seconds, exponent = COST[stage]
    return seconds * (max(n_rows, 1) / 1e6) ** exponent


def seconds_left(done: dict, left, n_rows: int) -> float:
    """About how long the stages ``left`` will take, from the seconds the stages ``done`` ({stage: s}) took."""
    rate = sum(done.values()) / sum(stage_seconds(s, n_rows) for s in done)
    return rate * sum(stage_seconds(s, n_rows) for s in left)


def library_versions() -> dict:
    """The versions of raregal and of the libraries a search's result depends on (summary.json, stage keys)."""
    from importlib import metadata

    out = {}
    for dist in ("raregal", "numpy", "scipy", "scikit-learn", "umap-learn", "pynndescent", "fast_hdbscan", "hdbscan",
                 "numba", "pandas", "pyarrow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def data_key(X: np.ndarray, chunk_rows: int = 65536) -> str:
    """A hash of ``X``'s shape, dtype and bytes, read in chunks (a memory-mapped table is not copied)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([list(X.shape), str(X.dtype)]).encode())
    for start in range(0, len(X), chunk_rows):
        h.update(np.ascontiguousarray(X[start:start + chunk_rows]).data)
    return h.hexdigest()


class StageStore:
    """The finished stages of one search in ``folder``, keyed by the data and the parameters.

    ``params``: the search's settings under their config names (``seed``, ``n_neighbors``, ...).
    """

    def __init__(self, folder: str | os.PathLike, X: np.ndarray, params: dict):
        self.folder = Path(folder)
        self.n_rows, self.params = len(X), params
        base = data_key(X) + json.dumps(library_versions(), sort_keys=True)  # an upgrade recomputes
        self.keys: dict[str, str] = {}
        for stage in STAGES:
            before = self.keys[AFTER[stage]] if AFTER[stage] else base
            own = json.dumps({k: params.get(k) for k in DEPENDS[stage]}, sort_keys=True, default=str)
            own += "" if REVISION[stage] == 1 else f"|revision {REVISION[stage]}"  # revision 1: the keys kept before
            self.keys[stage] = hashlib.blake2b(f"{before}|{stage}|{own}".encode(), digest_size=16).hexdigest()
        self.computed: dict[str, float] = {}  # stage -> seconds, for the stages this run computed
        self.resumed: list[str] = []

    def path(self, stage: str) -> Path:
        return self.folder / f"{stage}.npz"

    def load(self, stage: str, quiet: bool = False) -> dict | None:
        """The arrays of ``stage`` when it was finished with this data and these parameters, else None.

        ``quiet``: read back what this run kept itself (not a resumed stage, nothing said).
        """
        arrays = load_keyed(self.path(stage), self.keys[stage], stage, quiet=quiet)
        if arrays is not None and not quiet:
            self.resumed.append(stage)
        return arrays

    def kept(self, stage: str) -> bool:
        """Whether ``stage`` is kept with this data and these parameters (its arrays are not read)."""
        try:
            with np.load(self.path(stage), allow_pickle=False) as npz:
                return str(npz["_key"]) == self.keys[stage]
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            return False

    def save(self, stage: str, arrays: dict, seconds: float) -> None:
        """Keep ``stage``'s arrays (written whole or not at all) and say how long the rest may take."""
        save_keyed(self.path(stage), self.keys[stage], arrays)
        self.computed[stage] = seconds
        skipped = {"umap2"} if self.params.get("map_2d") is False else set()
        left = [s for s in STAGES if s not in self.computed and s not in self.resumed and s not in skipped]
        if left:
            log.info("%-10s kept in %s; about %s left (%s)", stage, self.path(stage),
                     duration(seconds_left(self.computed, left, self.n_rows)), ", ".join(left))


def load_keyed(path: Path, key: str, name: str, quiet: bool = False) -> dict | None:
    """The arrays kept in ``path`` under ``key`` (:func:`save_keyed`), or None: missing, another key, or damaged."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["_key"]) != key:
                return None
            arrays = {k: npz[k] for k in npz.files if k != "_key"}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
        if path.exists() and not quiet:
            log.warning("%s: cannot be read (%s); computing the %s again", path, err, name)
        return None
    if not quiet:
        log.info("%-10s resumed from %s", name, path)
    return arrays


def save_keyed(path: Path, key: str, arrays: dict) -> None:
    """Keep ``arrays`` in ``path`` (``.npz``) under ``key``, written whole or not at all."""
    from raregal.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, _key=np.array(key), **arrays)


def staged(store: StageStore | None, stage: str, compute) -> dict:
    """``compute()`` (a dict of arrays), or what ``store`` kept of ``stage`` from an earlier run."""
    if store is not None:
        found = store.load(stage)
        if found is not None:
            return found
    t0 = time.perf_counter()
    arrays = compute()
    if store is not None:
        store.save(stage, arrays, time.perf_counter() - t0)
    return arrays
