"""The run folder as one typed object: what ``raregal search`` writes and what every reader reads.

:class:`Run` holds a search's result; :func:`write_run` puts it on disk and :func:`read_run`
reads it back (``read_run(p)`` after ``write_run(run, p)`` gives equal tables and dicts). The
files (the README's "The run directory"):

=========================  ==============================================================
``clusters.parquet``       :attr:`Run.clusters`, one row per input galaxy
``condensed_tree.parquet`` :attr:`Run.tree` (absent: None)
``summary.json``           ``clusters``: :attr:`Run.cluster_info`; ``merge_suggestions``:
                           :attr:`Run.merges` (their only copy; absent: None, not computed);
                           ``parameters``: :attr:`Run.parameters`; ``timing``:
                           :attr:`Run.timings`; every other key: :attr:`Run.summary`
``config.toml``            written from :attr:`Run.parameters` so ``--config`` can repeat the
                           run; not read back (TOML has no null)
=========================  ==============================================================

:mod:`raregal.runs.folder` owns the folder itself (the ``.raregal.json`` marker, the write lock,
what an overwrite may remove); :func:`write_run` goes through it. The report's
:func:`raregal.runs.with_images.load_run` adds the image joins on top of :func:`read_run`.
"""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from raregal import atomic
from raregal.runs import folder
from raregal.errors import InputError
from raregal.discovery.checks.merge import COLUMNS as MERGE_COLUMNS

CLUSTERS, TREE, SUMMARY, CONFIG = "clusters.parquet", "condensed_tree.parquet", "summary.json", "config.toml"
#: Columns every clusters.parquet has (readers check them).
NEEDED = ("id_str", "cluster", "probability", "kept")
TREE_COLUMNS = ("parent", "child", "lambda_val", "child_size")
#: The per-cluster table's columns and dtypes: the first five always, the rest when their check ran.
INFO_DTYPES = {"cluster": "int64", "size": "int64", "persistence": "float64", "tree_node": "int64",
               "mean_probability": "float64", "stability": "float64", "unstable": "bool",
               "artifact_class": "bool", "mean_artifact_fraction": "float64"}
BASE_INFO = ("cluster", "size", "persistence", "tree_node", "mean_probability")
#: Value of a missing int (a cluster of an older run without a tree node).
_INT_FILL = {"tree_node": -1, "cluster": -1}  # a galaxy without a cluster is unclustered, never cluster 0
MERGE_DTYPES = {c: ("str" if c == "reason" else "int64" if c in ("cluster_a", "cluster_b", "size_a", "size_b",
                                                                  "tree_distance") else "float64")
                for c in MERGE_COLUMNS}
#: summary.json keys that hold the Run's own fields.
_OWN = ("clusters", "merge_suggestions", "parameters", "timing")


def typed(frame: pd.DataFrame, dtypes: dict) -> pd.DataFrame:
    """A copy of ``frame`` with each column named in ``dtypes`` cast to its dtype.

    A missing bool is False (older runs left some entries without the key), a missing int the
    column's fill (``tree_node`` and ``cluster``: -1, else 0); floats keep NaN. Other columns are left as they are.
    """
    out = frame.copy()
    for col, dtype in dtypes.items():
        if col not in out.columns:
            continue
        values = out[col]
        if dtype == "bool":
            out[col] = values.where(values.notna(), False).astype(bool)
        elif dtype == "int64":
            out[col] = pd.to_numeric(values).fillna(_INT_FILL.get(col, 0)).astype(np.int64)
        elif dtype == "float64":
            out[col] = pd.to_numeric(values).astype(np.float64)
        else:
            out[col] = values.astype(dtype)
    return out


def typed_info(info: pd.DataFrame) -> pd.DataFrame:
    """The per-cluster table with :data:`INFO_DTYPES`, sorted by cluster (only the base columns when empty)."""
    info = info.reindex(columns=list(BASE_INFO)) if info.empty else info
    for col in BASE_INFO:
        if col not in info.columns:
            info = info.assign(**{col: np.nan})
    return typed(info, INFO_DTYPES).sort_values("cluster", kind="stable").reset_index(drop=True)


def cluster_info(clusters: pd.DataFrame, listed=()) -> pd.DataFrame:
    """One row per cluster, typed: ``listed`` (summary.json's ``clusters`` entries) and what ``clusters`` counts.

    An entry's own size and mean probability win; missing ones, and clusters ``clusters`` has but
    ``listed`` lacks, are counted from ``clusters`` (an older or hand-made run).
    """
    members = clusters[clusters["cluster"] >= 0]
    counted = members.groupby("cluster").agg(size=("id_str", "size"),
                                             mean_probability=("probability", "mean")).reset_index()
    info = pd.DataFrame(list(listed))
    if info.empty:
        return typed_info(counted)
    if "cluster" not in info.columns:
        raise InputError(f"{SUMMARY}: entries of 'clusters' lack the key 'cluster'")
    info["cluster"] = pd.to_numeric(info["cluster"]).astype(np.int64)
    unlisted = counted[~counted["cluster"].isin(info["cluster"])]
    if len(unlisted):
        info = pd.concat([info, unlisted], ignore_index=True)
    by_id = counted.set_index("cluster")
    for col in ("size", "mean_probability"):
        found = info["cluster"].map(by_id[col])
        info[col] = info[col].fillna(found) if col in info.columns else found
    return typed_info(info)


def merge_table(records) -> pd.DataFrame:
    """Merge suggestions (:data:`raregal.discovery.checks.merge.COLUMNS`, typed) from summary.json's records or a table."""
    frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    if frame.empty and not len(frame.columns):
        frame = pd.DataFrame(columns=MERGE_COLUMNS)
    return typed(frame, MERGE_DTYPES).reset_index(drop=True)


@dataclass(eq=False)
class Run:
    """One search's result. Tables are typed on construction (bools are bool, ids int64).

    clusters : one row per input galaxy (:data:`NEEDED` columns, UMAP coordinates, carried columns).
    cluster_info : one row per cluster (:data:`INFO_DTYPES`); None: counted from ``clusters``.
    tree : the condensed tree (:data:`TREE_COLUMNS`) or None.
    merges : merge suggestions (:data:`raregal.discovery.checks.merge.COLUMNS`), or None when they were not computed.
    parameters : every search parameter (``SearchConfig.to_dict()``).
    timings : seconds and peak memory per stage, wall seconds.
    summary : everything else summary.json says (input, counts, versions, stability, metrics, ...).
    path : the folder it was read from or written to.
    """

    clusters: pd.DataFrame
    cluster_info: pd.DataFrame | None = None
    tree: pd.DataFrame | None = None
    merges: pd.DataFrame | None = None
    parameters: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self):
        self.clusters = typed(self.clusters, {"cluster": "int64", "kept": "bool"})
        self.cluster_info = cluster_info(self.clusters) if self.cluster_info is None else typed_info(self.cluster_info)
        if self.merges is not None:
            self.merges = merge_table(self.merges)

    @property
    def kept(self) -> pd.DataFrame:
        """Rows that passed the pre-filter (the points of the map and of the condensed tree)."""
        return self.clusters[self.clusters["kept"]]

    @property
    def has_map(self) -> bool:
        """True when the run has its 2-D map (``umap2_0``, ``umap2_1``; absent after ``--no-2d``)."""
        return {"umap2_0", "umap2_1"} <= set(self.clusters.columns)

    @property
    def has_images(self) -> bool:
        """True when the run says where some images are (:func:`raregal.inputs.tables.image_sources`)."""
        from raregal.inputs.tables import has_images

        return has_images(self.clusters)

    def to_summary(self) -> dict:
        """What summary.json holds: :attr:`summary` plus the per-cluster entries, merges, parameters, timing."""
        out = {**self.summary, "clusters": _records(self.cluster_info)}
        if self.merges is not None:
            out["merge_suggestions"] = _records(self.merges)
        return {**out, "parameters": self.parameters, "timing": self.timings}


def _records(frame: pd.DataFrame) -> list[dict]:
    """JSON-ready rows: Python scalars, NaN as None."""
    def native(value):
        value = value.item() if isinstance(value, np.generic) else value
        return None if isinstance(value, float) and not np.isfinite(value) else value

    return [{k: native(v) for k, v in rec.items()} for rec in frame.to_dict(orient="records")]


def is_run_dir(path) -> bool:
    """True when ``path`` is a folder holding a run (``clusters.parquet`` and ``summary.json``)."""
    return isinstance(path, (str, os.PathLike)) and all((Path(path) / n).is_file() for n in (CLUSTERS, SUMMARY))


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    """``run_dir`` as a Path, after a cheap check that it holds a run; raises InputError if not.

    Lets a command fail at once, before anything slow, on a mistyped run directory.
    """
    path = Path(run_dir)
    for name in (CLUSTERS, SUMMARY):
        if not (path / name).exists():
            raise InputError(f"{path}: not a run directory ({name} missing); run `raregal search` first")
    return path


def _read_parquet(path: Path, needed) -> pd.DataFrame:
    from raregal.inputs.tables import read_table

    frame = read_table(path)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def read_run(run_dir: str | os.PathLike) -> Run:
    """Read the run folder ``run_dir`` (written by :func:`write_run`, or by an older raregal).

    Raises InputError naming the file or column when the folder is incomplete or damaged.
    """
    path = check_run_dir(run_dir)
    clusters = _read_parquet(path / CLUSTERS, NEEDED)
    try:
        whole = json.loads((path / SUMMARY).read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path / SUMMARY}: not valid JSON: {err}") from err
    if not isinstance(whole, dict):
        raise InputError(f"{path / SUMMARY}: holds a {type(whole).__name__}, not an object")
    tree = _read_parquet(path / TREE, TREE_COLUMNS) if (path / TREE).exists() else None
    merges = whole.get("merge_suggestions")
    return Run(clusters=clusters, cluster_info=cluster_info(clusters, whole.get("clusters") or ()), tree=tree,
               merges=None if merges is None else merge_table(merges), parameters=whole.get("parameters") or {},
               timings=whole.get("timing") or {}, summary={k: v for k, v in whole.items() if k not in _OWN},
               path=path)


def write_run(run, out_dir: str | os.PathLike, *, overwrite: bool = False, inputs: tuple = (),
              command: str = "raregal search", timer=None) -> Run:
    """Write ``run`` into the folder ``out_dir``; return the Run as written (its ``path`` set).

    ``run`` is a :class:`Run`, or a :class:`raregal.discovery.pipeline.SearchResult` (its ``run`` is written):
    ``write_run(search_table(frame, config), out_dir)`` is the table-to-folder job.

    :mod:`raregal.runs.folder` decides whether the folder may be written (``overwrite``, ``inputs``:
    see :func:`~raregal.runs.folder.check_output_folder`), marks it and holds its lock; with
    ``overwrite`` the earlier run's files go first. Each file is written atomically and
    ``summary.json`` last, so a folder with one holds a complete run. With a
    :class:`~raregal.timing.StageTimer`, the tables are written as its ``write`` stage and the
    returned (and written) timings are the timer's (:meth:`~raregal.timing.StageTimer.totals`).
    """
    run = run if isinstance(run, Run) else getattr(run, "run", run)  # a SearchResult: its Run
    if not isinstance(run, Run):
        raise TypeError(f"write_run takes a Run or a SearchResult, not {type(run).__name__}")
    out_dir = Path(out_dir)
    # refused before the lock too, so a refusal leaves no new folder or lock file behind
    folder.check_output_folder(out_dir, "run", overwrite=overwrite, inputs=inputs, flag="out_dir")
    with folder.WriteLock(out_dir, command):
        folder.check_output_folder(out_dir, "run", overwrite=overwrite, inputs=inputs, flag="out_dir")
        folder.mark(out_dir, "run", command)
        if overwrite:
            folder.remove_outputs(out_dir, "run")
        with timer.stage("write") if timer is not None else nullcontext():
            atomic.write_parquet(out_dir / CLUSTERS, run.clusters)
            if run.tree is not None:
                atomic.write_parquet(out_dir / TREE, run.tree)
            atomic.write_toml(out_dir / CONFIG, run.parameters)
        run = replace(run, path=out_dir, timings=timer.totals() if timer is not None else run.timings)
        atomic.write_json(out_dir / SUMMARY, run.to_summary())
    return run
