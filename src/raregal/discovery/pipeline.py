"""The rare-class search: pre-filter → UMAP → HDBSCAN leaf clusters.

Three ways in, from the array to the folder:

* :class:`RareClassSearch`, a scikit-learn estimator on a plain array of representations
  (already pre-filtered): ``fit(X)`` sets ``labels_``, ``probabilities_``, ``embedding_``
  (5-D UMAP), ``embedding_2d_``, ``condensed_tree_``, ``cluster_persistence_``;
* :func:`search_table`, the pure core on an in-memory table: check it, pre-filter on the
  predicted morphology, fit, run the checks of :mod:`raregal.discovery.checks.per_cluster` (stability with
  ``stability`` > 0, merge suggestions, artifact classes); returns a :class:`SearchResult`
  (the fitted estimator and the :class:`raregal.runs.model.Run`), writes nothing;
* :func:`run_search`, the file-to-folder convenience behind ``raregal search``: read the table,
  :func:`search_table`, :func:`raregal.runs.model.write_run` (``clusters.parquet``,
  ``condensed_tree.parquet``, ``summary.json``, ``config.toml``).

No report is built here (this module does not import :mod:`raregal.views.report`): the CLI and the
demo build it after the run is written.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from raregal.runs import folder as runfolder
from raregal.inputs import sky
from raregal.inputs.tables import FILE_LOC, ID, array_frame, lean_readable, read_table, representation_table
from raregal.discovery.checks.per_cluster import check_clusters
from raregal.discovery.config import SearchConfig, config_from_dict
from raregal.discovery.estimator import RareClassSearch
from raregal.discovery.stages import library_versions
from raregal.errors import InputError
from raregal.runs.model import Run, cluster_info, write_run
from raregal.timing import StageTimer
from raregal.discovery.prefilter import campaign_columns, paper_cuts, prefilter

log = logging.getLogger("raregal")



def _valid_rows(frame: pd.DataFrame, X: np.ndarray, drop_invalid: bool) -> np.ndarray:
    valid = np.isfinite(X).all(axis=1)
    if not valid.all():
        bad = frame[ID].to_numpy()[~valid]
        if not drop_invalid:
            raise InputError(f"{len(bad)} rows have NaN or infinite features, e.g. ids "
                             f"{', '.join(map(str, bad[:10]))}; fix them or pass --drop-invalid")
        log.warning("dropping %d rows with NaN or infinite features (--drop-invalid), e.g. %s",
                    len(bad), ", ".join(map(str, bad[:5])))
    return valid


def galaxy_table(frame: pd.DataFrame, kept: np.ndarray, est: RareClassSearch) -> pd.DataFrame:
    """The run's per-galaxy table (``clusters.parquet``), one row per input row: id, cluster, probability, kept, UMAP coordinates, carried columns.

    Carried when the input has them: ``file_loc``, ``true_class``, and ``ra``/``dec`` (degrees,
    checked by :func:`raregal.inputs.sky.with_coordinates`).
    """
    n = len(frame)
    out = pd.DataFrame({ID: frame[ID].to_numpy()})
    labels = np.full(n, -1, dtype=np.int64)
    labels[kept] = est.labels_
    probs = np.zeros(n, dtype=np.float32)
    probs[kept] = est.probabilities_
    out["cluster"] = labels
    out["probability"] = probs
    out["kept"] = kept
    for name, emb in (("umap5", est.embedding_), ("umap2", est.embedding_2d_)):
        if emb is None:
            continue
        full = np.full((n, emb.shape[1]), np.nan, dtype=np.float32)
        full[kept] = emb
        for i in range(emb.shape[1]):
            out[f"{name}_{i}"] = full[:, i]
    for col in (FILE_LOC, "true_class", sky.RA, sky.DEC):
        if col in frame.columns:
            out[col] = frame[col].to_numpy()
    return out


def cluster_entries(est: RareClassSearch) -> list[dict]:
    """What only the fit knows of each cluster (``persistence``, ``tree_node``); sizes and mean
    probabilities are counted from the per-galaxy table by :func:`raregal.runs.model.cluster_info`."""
    return [{"cluster": k, "persistence": float(est.cluster_persistence_[k]), "tree_node": int(est.cluster_tree_nodes_[k])}
            for k in range(est.n_clusters_)]


def check_representation(X: np.ndarray, ids: np.ndarray, config: SearchConfig) -> None:
    """Refuse representations no search can use: width 1, narrower than the UMAP, or degenerate.

    ``X`` (N, D) holds the rows that will be searched; errors name the parameter at fault.
    """
    n, width = X.shape
    if width < 2:
        raise InputError(f"the representation has width {width}; a search needs at least 2 features "
                         "(is features naming the right column?)", param="features")
    if config.n_components > width:
        raise InputError(f"n_components={config.n_components} is larger than the representation's width "
                         f"({width}); use at most {width}", param="n_components")
    if n == 0:
        return
    spread = np.ptp(X, axis=0)
    if not np.any(spread > 0):
        raise InputError(f"all {n} representations to search are identical (zero variance in every one of "
                         f"the {width} features, e.g. ids {', '.join(map(str, ids[:3]))}): there is nothing to "
                         "cluster; check the embedding")
    n_distinct = len(np.unique(X, axis=0))
    if n_distinct <= config.n_neighbors:
        raise InputError(f"only {n_distinct} distinct representations among {n} rows, not more than "
                         f"n_neighbors={config.n_neighbors}: the neighbour graph would be degenerate; check the "
                         "embedding (many copies of one image?)", param="n_neighbors")


def _prefilter_advice(counts: dict, cuts) -> str:
    """Which cuts removed how many galaxies, and the flags that loosen them."""
    before, removed = counts.get("valid", counts["input"]), []
    for cut in cuts:
        after = counts[f"after_{cut.name}"]
        if before > after:
            removed.append(f"{cut.name.replace('_', '-')} >= {cut.threshold:g} removed {before - after:,}")
        before = after
    loosen = "smooth_cut, edge_on_cut or artifact_cut, or set keep_artifacts"
    return f"{'; '.join(removed) or 'no cut removed any'}; to keep more, raise {loosen}"


def _check_kept(est: RareClassSearch, counts: dict, cuts) -> None:
    n_kept = counts["kept"]
    if n_kept < counts.get("valid", counts["input"]) and n_kept <= max(est.n_neighbors, est.n_components + 1):
        raise InputError(f"the pre-filter kept only {n_kept:,} of {counts['input']:,} galaxies, too few to "
                         f"search: {_prefilter_advice(counts, cuts)}",
                         param=("smooth_cut", "edge_on_cut", "artifact_cut", "keep_artifacts"))
    est.check_size(n_kept)


def _search_summary(source, frame, X, counts, est) -> dict:
    """What summary.json says besides the tables, the parameters and the timing (see raregal.runs.model)."""
    n_kept = counts["kept"]
    n_clustered = int((est.labels_ >= 0).sum())
    return {
        "input": None if source is None else str(Path(source).resolve()),
        "n_rows": len(frame),
        "n_features": int(X.shape[1]),
        "counts": counts,
        "n_clusters": int(est.n_clusters_),
        "n_clustered": n_clustered,
        "fraction_clustered": n_clustered / n_kept if n_kept else 0.0,
        "layout": est.layout_,  # what layout="auto" chose for this many galaxies
        "resumed_stages": est.resumed_stages_,  # stages read back from an interrupted run's checkpoints
        "versions": library_versions(),
    }


def _config(config, params) -> SearchConfig:
    if isinstance(config, dict) or config is None:
        config = config_from_dict(dict(config or {}))
    if params:
        config = config_from_dict(params, base=config)
    config.validate()
    RareClassSearch(**config.estimator_params()).backends()  # clashing choices fail before the table is read
    return config


@dataclass(eq=False)
class SearchResult:
    """What :func:`search_table` returns: the fitted estimator and the run, nothing written yet.

    estimator : the fitted :class:`RareClassSearch` (on the kept rows: ``estimator.labels_[i]`` is
        row ``np.flatnonzero(kept)[i]`` of the table).
    run : the :class:`raregal.runs.model.Run`; ``raregal.runs.model.write_run(result, out_dir)`` (or
        ``write_run(result.run, out_dir)``) writes it.
    config : the validated settings.
    kept : (N,) bool, the rows the pre-filter kept.
    counts : galaxies through each stage (``input``, ``valid``, ``after_<cut>``, ``kept``).
    """

    estimator: RareClassSearch
    run: Run
    config: SearchConfig
    kept: np.ndarray
    counts: dict

    @property
    def labels(self) -> np.ndarray:
        """(N,) cluster of every input row (-1: unclustered or not kept), in the table's order."""
        return self.run.clusters["cluster"].to_numpy()

    @property
    def n_clusters(self) -> int:
        return int(self.estimator.n_clusters_)


def search(data, config: SearchConfig | dict | None = None, *, ids=None, **params) -> SearchResult:
    """Find rare classes in a representation table or array: the paper's method, nothing written.

    Parameters
    ----------
    data : a representation table's path (recorded as the run's input, so :func:`raregal.similar`
        and :func:`raregal.guide` can use the run), a DataFrame (``id_str`` + ``feat_*``, and the
        predicted ``*_fraction`` columns the pre-filter reads when there are any, see
        :func:`search_table`) or an (N, D) array of representations (searched as they are: an
        array has no fractions to pre-filter on).
    config : :class:`SearchConfig` or dict of its keys (default: the paper's parameters).
    ids : (N,) galaxy ids for an array (default: the row numbers as strings).
    **params : config keys that override ``config`` (``seed=1``, ``min_samples=50``).

    Returns
    -------
    SearchResult
        ``labels`` (N,) cluster per row (-1: none), ``estimator`` (the fitted
        :class:`RareClassSearch`), ``run`` (write it with :func:`raregal.write_run`).

    Examples
    --------
    >>> import raregal
    >>> result = raregal.search("reps.parquet", seed=0)  # doctest: +SKIP
    >>> result.n_clusters, result.labels[:5]  # doctest: +SKIP
    """
    config = _config(config, params)
    if ids is not None and isinstance(data, (str, os.PathLike, pd.DataFrame)):
        raise InputError("ids: only for an array; a table has its own id_str column", param="ids")
    source = None
    if isinstance(data, (str, os.PathLike)):
        source, data = data, read_table(data)
    elif not isinstance(data, pd.DataFrame):
        data = array_frame(data, ids)
    return _search_table(data, config, source, StageTimer())


def search_table(frame: pd.DataFrame, config: SearchConfig | dict | None = None, *,
                 source: str | os.PathLike | None = None) -> SearchResult:
    """Search an in-memory representation table; return the fitted estimator and the run (no file I/O).

    ``frame`` has ``id_str`` and the representation (``feat_<i>`` columns, or the list column or
    prefix ``config.features`` names); optionally the predicted ``*_fraction`` columns the
    pre-filter reads, ``ra``/``dec``, ``file_loc`` and ``true_class`` (then the run's summary has
    ``metrics``). ``config``: a :class:`SearchConfig` or a dict of its keys (default: the paper's).
    The table is checked, pre-filtered (:mod:`raregal.discovery.prefilter`), the kept rows fitted with
    :class:`RareClassSearch` (``config.estimator_params()``) and the clusters checked
    (:mod:`raregal.discovery.checks.per_cluster`). ``source``, the file the table came from, is recorded as the
    run's input (the report finds images inside a catalog through it) and named in errors.
    Raises :class:`InputError`, naming the parameter, before the fit when the table cannot be searched.
    """
    return _search_table(frame, _config(config, {}), source, StageTimer())


def _search_table(frame, config: SearchConfig, source, timer: StageTimer, stages_dir=None) -> SearchResult:
    """:func:`search_table` of ``frame``: a DataFrame, or the path of a table read here (the representation
    then held once: read straight into X, and only the kept rows' copy after the pre-filter)."""
    with timer.stage("read"):
        frame, X = representation_table(frame, config.features, where="the table" if source is None else str(source),
                                        lean=not isinstance(frame, pd.DataFrame))
        valid = _valid_rows(frame, X, config.drop_invalid)
    log.info("read %d galaxies with %d-d representations from %s", len(frame), X.shape[1], source or "a table")
    columns = campaign_columns(frame.columns, config.campaign)  # the fraction columns of the campaign searched
    with timer.stage("prefilter"):
        cuts = paper_cuts(config.smooth_cut, config.edge_on_cut, config.artifact_cut, config.keep_artifacts,
                          config.keep_disturbed, columns)
        kept, counts = prefilter(frame, cuts, keep=None if valid.all() else valid)
    log.info("pre-filter: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
    est = RareClassSearch(**config.estimator_params(), verbose=True, stages_dir=stages_dir)
    _check_kept(est, counts, cuts)
    X = X if kept.all() else X[kept]  # one copy of the kept rows; the whole table's X is freed (a path's)
    check_representation(X, frame[ID].to_numpy()[kept], config)
    est.fit(X)
    timer.seconds.update(est.timings_)
    timer.peak_mib.update(est.memory_mib_)
    return finish_search(frame, kept, est, X, config, source, counts, timer, artifact_column=columns["artifact"])


def finish_search(frame, kept, est, X, config, source, counts, timer, *, artifact_column=None, whole=None,
                  checks_frame=None, extra=None, summary=None) -> SearchResult:
    """A fitted search's checks, per-galaxy table and :class:`Run`: the :class:`SearchResult`.

    ``est`` was fitted on ``X``, the rows ``kept`` of ``frame``. The Dask search
    (:mod:`raregal.discovery.on_dask.search`) fits a sample: it passes ``whole`` (labels,
    probabilities and maps of every kept row), ``checks_frame`` (the fitted rows of the table, for
    the artifact check), ``extra`` per-galaxy columns and ``summary`` entries.
    """
    whole = est if whole is None else whole
    checks = check_clusters(est, X, frame if checks_frame is None else checks_frame,
                            kept if checks_frame is None else None, stability=config.stability,
                            unstable_below=config.unstable_below, artifact_cut=config.artifact_cut,
                            merge_max_tree_distance=config.merge_max_tree_distance,
                            merge_max_centroid_ratio=config.merge_max_centroid_ratio, timer=timer,
                            artifact_column=artifact_column)
    table = galaxy_table(frame, kept, whole)
    for name, values in (extra or {}).items():
        table[name] = values
    table, info, entries = checks.annotate(table, cluster_info(table, cluster_entries(est)))
    summary = {**_search_summary(source, frame, X, counts, whole), **entries, **(summary or {})}
    if "true_class" in frame.columns:
        summary["metrics"] = _score(frame["true_class"].to_numpy(), table["cluster"].to_numpy())
    run = Run(clusters=table, cluster_info=info, tree=est.condensed_tree_, merges=checks.merges,
              parameters=config.to_dict(), timings=timer.totals(), summary=summary)
    log.info("%d clusters; %d of %d kept galaxies clustered (%.1f%%)", est.n_clusters_, summary["n_clustered"],
             counts["kept"], 100 * summary["fraction_clustered"])
    return SearchResult(estimator=est, run=run, config=config, kept=kept, counts=counts)


def run_search(reps: str | os.PathLike, out_dir: str | os.PathLike, config: SearchConfig | dict | None = None,
               overwrite: bool = False, *, dask: str | None = None, dask_workers: int | None = None,
               dask_sample: int | None = None, **params) -> dict:
    """Search the representation table in the file ``reps`` and write a run directory; return the summary dict.

    The convenience behind ``raregal search``: read the table, :func:`search_table`,
    :func:`raregal.runs.model.write_run`. ``config`` (a :class:`SearchConfig` or dict) sets the
    parameters; keyword ``params`` (config keys) are a shorthand that overrides it. It builds no
    report (``raregal search`` and the demo do, with :func:`raregal.views.report.report_after_search`).
    Before the first expensive step it checks the parameters and that ``out_dir`` is new, empty
    or (with ``overwrite``) an earlier raregal run and not inside the input (:mod:`raregal.runs.folder`);
    :func:`search_table` checks the table and the pre-filter's result before the fit. The folder is
    locked while it is written; each output file is written atomically, so an interrupted run
    leaves complete files or none; a rerun with ``overwrite`` removes the earlier run's files first.
    Each finished stage (k-NN graph, 5-D layout, 2-D map, clusters) is kept in ``out_dir/.stages``
    until the run is written, so the same command after a kill resumes from the last one, with the
    same result (:mod:`raregal.discovery.stages`).

    ``dask``: search on a Dask cluster instead (:mod:`raregal.discovery.on_dask.search`): ``"local"``
    (a ``LocalCluster`` of ``dask_workers`` processes), a scheduler address or a SLURM TOML file
    (as ``raregal embed --dask``); the layout is fitted on ``dask_sample`` galaxies (default 1,000,000)
    and the rest placed.
    """
    config = _config(config, params)
    if dask is None and (dask_workers is not None or dask_sample is not None):
        raise InputError("dask_workers and dask_sample are settings of a search on Dask: give dask too "
                         "(e.g. --dask local)", param="dask")
    if dask is not None:  # before any cluster starts
        from raregal.discovery.on_dask.search import DEFAULT_SAMPLE, check_dask_params

        dask_sample = check_dask_params(reps, config, DEFAULT_SAMPLE if dask_sample is None else dask_sample,
                                        dask_workers)
    out_dir = runfolder.check_output_folder(out_dir, "run", overwrite=overwrite, inputs=(reps,), flag="out_dir")
    timer = StageTimer()
    if dask is None:  # a Parquet table is read inside (its representation once, straight into an array), others now
        with timer.stage("read", echo=False):  # logged once, with the table's checks (search_table's "read")
            table = reps if lean_readable(reps) else read_table(reps)
        compute = lambda stages: _search_table(table, config, reps, timer, stages_dir=stages)  # noqa: E731
    else:
        compute = lambda stages: _search_on_dask(reps, config, dask, dask_workers, dask_sample, timer, stages)  # noqa: E731
    created = not out_dir.exists()
    try:
        with runfolder.WriteLock(out_dir, "raregal search"):
            runfolder.check_output_folder(out_dir, "run", overwrite=overwrite, flag="out_dir")  # still ours?
            runfolder.mark(out_dir, "run", "raregal search")  # raregal's from the start: its .stages resume
            result = compute(out_dir / runfolder.STAGES)
            run = write_run(result, out_dir, overwrite=overwrite, inputs=(reps,), timer=timer)  # the only writer
            shutil.rmtree(out_dir / runfolder.STAGES, ignore_errors=True)  # the run is whole: its checkpoints go
    except BaseException:
        if created:
            _remove_if_empty(out_dir)
        raise
    log.info("results in %s", out_dir.resolve())
    return run.to_summary()


def _search_on_dask(reps, config, dask, dask_workers, dask_sample, timer, stages_dir) -> SearchResult:
    """:func:`raregal.discovery.on_dask.search.search_dask` on the cluster ``dask`` names, closed afterwards."""
    from raregal.discovery.on_dask.search import search_dask
    from raregal.embedding.on_dask import make_client

    try:
        client, cluster = make_client(dask, dask_workers)
    except (OSError, ValueError, TimeoutError) as err:  # no scheduler at that address, or not an address
        raise InputError(f"dask={dask!r}: cannot start or reach a Dask cluster there ({err}); give 'local', "
                         "a scheduler address (tcp://host:8786) or a TOML file with a [slurm] table",
                         param="dask") from err
    try:
        log.info("Dask: %d workers (%s)", len(client.scheduler_info()["workers"]), dask)
        return search_dask(reps, config, client, sample_size=dask_sample, stages_dir=stages_dir, timer=timer)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _remove_if_empty(folder: Path) -> None:
    """Remove a folder this run made when nothing but raregal's marker is in it (a failed first run)."""
    try:
        if all(p.name in (runfolder.MARKER, runfolder.LOCK) for p in folder.iterdir()):
            shutil.rmtree(folder)
    except OSError:
        pass


def _score(true_class: np.ndarray, labels: np.ndarray) -> dict:
    from raregal.evaluation.recovery import score_clusters

    return score_clusters(np.asarray(true_class).astype(str), labels)
