"""The search on a Dask cluster: what splits runs as tasks, the layout is fitted on a sample that keeps rare groups.

Stages (``raregal search --dask``; each Dask stage is a set of tasks, the client holds only
small arrays and the sample):

1. **read + pre-filter** by partition (:mod:`.partitions`), on the workers;
2. **k-NN graph** split by cell (:mod:`.cell_knn`): one machine's inverted-file graph, from
   which each row's density and the data's intrinsic dimension are kept (``RUN_DIR/.stages/
   dask_density.npz``; the graph itself stays on the workers and is dropped);
3. **sample**: a density-biased draw of ``sample_size`` rows (:mod:`.density`) that keeps tight
   groups whole;
4. **fit** :class:`~raregal.discovery.estimator.RareClassSearch` on the sample, on the client
   (its stages kept as one machine's are);
5. **place** the other rows by partition (:mod:`.placement`): map coordinates and clusters from
   their nearest fitted galaxies.

The same seed gives the same clusters: every draw is seeded, every task a deterministic
function of its inputs, and results are put together in the table's row order, whatever the
number of workers.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

import numpy as np
import pandas as pd

from raregal.discovery.knn import GRAPH_PROBES
from raregal.discovery.on_dask import cell_knn, density, partitions, placement
from raregal.discovery.stages import data_key, library_versions
from raregal.errors import InputError

log = logging.getLogger("raregal")

#: Rows per k-NN block task (the blocks are groups of nearby cells).
BLOCK_ROWS = 100_000
#: Input rows per partition: small Parquet parts (``raregal embed --dask`` writes 512-row parts)
#: are read together, so the tasks stay few (one per partition and k-NN block).
PARTITION_ROWS = 100_000
#: Galaxies the layout is fitted on by default (``--dask-sample``): what one machine searches in ~3.5 GiB.
DEFAULT_SAMPLE = 1_000_000


@dataclass
class Table:
    """The table on the cluster after :func:`read`: what the client holds, and futures of the rest."""

    X: list  # futures of each partition's kept representations (float32)
    meta: pd.DataFrame  # one row per input galaxy: id, carried columns, the artifact column, kept
    counts: dict  # the pre-filter's counts
    cuts: list  # the pre-filter's cuts
    columns: dict  # the campaign's fraction columns (prefilter.campaign_columns)
    offsets: np.ndarray  # (n_partitions + 1,) first kept row of each partition
    key: str  # a hash of the kept representations' bytes (for the stages' keys)


def read(client, source, config) -> Table:
    """Read and pre-filter the table by partition (about :data:`PARTITION_ROWS` rows each), on the workers."""
    import dask.dataframe as dd

    from raregal.discovery.prefilter import campaign_columns, paper_cuts
    from raregal.inputs.tables import check_ids

    names = partitions.parquet_names(source)
    columns = campaign_columns(names, config.campaign)
    cuts = paper_cuts(config.smooth_cut, config.edge_on_cut, config.artifact_cut, config.keep_artifacts,
                      config.keep_disturbed, columns)
    fractions = [c.column for c in cuts] + [c for cut in cuts for c in cut.rescue_columns] + [columns["artifact"]]
    frame = dd.read_parquet(str(source), columns=partitions.wanted_columns(names, config.features, fractions))
    frame = frame.repartition(npartitions=partitions.n_partitions(source, frame.npartitions, PARTITION_ROWS))
    parts = client.compute([_delayed(partitions.read_partition)(f, config.features, cuts, config.drop_invalid,
                                                                str(source), columns["artifact"])
                            for f in frame.to_delayed()])
    metas = client.gather([client.submit(itemgetter("meta"), p) for p in parts])
    counts = partitions.add_counts(client.gather([client.submit(itemgetter("counts"), p) for p in parts]))
    if counts.get("input", 0) == 0:
        raise InputError(f"{source}: the table has no rows", param="reps")
    kept = [int(m["kept"].sum()) for m in metas]
    X = [client.submit(itemgetter("X"), p) for p, k in zip(parts, kept) if k]  # partitions with kept rows
    keys = client.gather([client.submit(data_key, x) for x in X])
    meta = pd.concat(metas, ignore_index=True)
    check_ids(meta, str(source))  # ids unique across partitions, not only within each
    offsets = np.concatenate([[0], np.cumsum([k for k in kept if k])]).astype(np.int64)
    return Table(X, meta, counts, cuts, columns, offsets, hashlib.blake2b("".join(keys).encode()).hexdigest())


def _delayed(fn):
    from dask import delayed

    return delayed(fn, pure=True)


def by_partition(rows: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Sorted global kept rows split by partition, as each partition's local rows."""
    cuts = np.searchsorted(rows, offsets)
    return [rows[a:b] - offsets[p] for p, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]))]


def gather_rows(client, X: list, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Kept rows by their global number (sorted), gathered from the partitions that hold them."""
    futures = [client.submit(partitions.take, X[p], local) for p, local in enumerate(by_partition(rows, offsets))
               if len(local)]
    return np.concatenate(client.gather(futures))


def _or(*masks: np.ndarray) -> np.ndarray:
    return np.logical_or.reduce(masks)


def tree_or(client, futures: list, fan_in: int = 32):
    """The elementwise OR of the arrays behind ``futures``, reduced on the workers, gathered once."""
    while len(futures) > 1:
        futures = [client.submit(_or, *futures[i:i + fan_in]) for i in range(0, len(futures), fan_in)]
    return client.gather(futures[0])


def block_density(pieces: list[dict], centroids, n_probe: int, n_neighbors: int, metric: str) -> dict:
    """One block's k-NN rows reduced at once to what the sample needs: ``index``, ``log_dk`` and the
    sum of the inverse dimension estimates (the graph itself is dropped on the worker)."""
    found = cell_knn.block_knn(pieces, centroids, n_probe, n_neighbors, metric)
    d = found["distances"]
    if metric not in ("euclidean", "l2"):  # cosine / correlation distances are d^2 / 2 of the unit rows'
        d = np.sqrt(2.0 * np.maximum(d, 0.0))
    log_dk, inverse = density.log_distance_ratios(d)
    return {"index": found["index"], "log_dk": log_dk, "inverse_sum": float(inverse.sum())}


def row_density(client, X: list, offsets: np.ndarray, n_neighbors: int, metric: str, seed: int,
                n_probe: int = GRAPH_PROBES, stats: dict | None = None) -> tuple[np.ndarray, float]:
    """(n,) log distance of every kept row to its ``n_neighbors``-th neighbour, and the intrinsic dimension.

    From the inverted-file k-NN graph split by cell (:mod:`.cell_knn`). ``stats``, when given, gets
    ``n_blocks``, ``n_cells`` and ``rows_sent_per_row``: how many times each row is sent to a block
    task on average (its own block and the blocks that probe its cell), the graph's network cost in
    units of the table.
    """
    from raregal.discovery.distances import metric_space

    n = int(offsets[-1])
    n_lists = cell_knn.n_cells(n)
    rows = cell_knn.sample_rows(n, n_lists, seed)
    sample = gather_rows(client, X, offsets, np.arange(n) if rows is None else rows)
    centroids = cell_knn.fit_centroids(metric_space(sample, metric), n_lists, seed)
    block_of_cell = cell_knn.cell_blocks(centroids, max(1, -(-n // BLOCK_ROWS)), seed)
    n_blocks = int(block_of_cell.max()) + 1
    [centroids_f] = client.scatter([centroids], broadcast=True)
    P = [client.submit(metric_space, x, metric) for x in X]
    probes = [client.submit(cell_knn.partition_probes, p, centroids_f, n_probe) for p in P]
    need = tree_or(client, [client.submit(cell_knn.probed_cells, pr, block_of_cell, n_blocks) for pr in probes])
    if stats is not None:
        sizes = np.sum(client.gather([client.submit(_cell_sizes, pr, len(centroids)) for pr in probes]), axis=0)
        stats.update(n_blocks=n_blocks, n_cells=len(centroids), rows_sent_per_row=float((need @ sizes).sum() / n))
    futures = []
    for b in np.unique(block_of_cell):
        in_block = block_of_cell == b
        pieces = [client.submit(cell_knn.cut_piece, p, pr, int(offsets[i]), need[b], in_block)
                  for i, (p, pr) in enumerate(zip(P, probes))]
        futures.append(client.submit(block_density, pieces, centroids_f, n_probe, n_neighbors, metric))
    log_dk, inverse_sum = np.full(n, np.nan), 0.0
    for part in client.gather(futures):
        log_dk[part["index"]] = part["log_dk"]
        inverse_sum += part["inverse_sum"]
    if np.isnan(log_dk).any():  # every kept row is the query of exactly one block
        raise RuntimeError(f"{int(np.isnan(log_dk).sum())} rows got no neighbours in the distributed k-NN graph")
    return log_dk, density.intrinsic_dimension(np.array([inverse_sum / n]))


def _cell_sizes(probes: np.ndarray, n_lists: int) -> np.ndarray:
    return np.bincount(probes[:, 0], minlength=n_lists)


def place_partition(X: np.ndarray, log_dk: np.ndarray, fitted_rows: np.ndarray, index, fitted: dict,
                    n_neighbors: int, metric: str) -> dict:
    """Coordinates and clusters of one partition's kept rows that were not fitted (``fitted_rows``: local rows that were)."""
    from raregal.discovery.distances import metric_space

    rest = np.setdiff1d(np.arange(len(X)), fitted_rows)
    out = (placement.place(metric_space(X[rest], metric), log_dk[rest], index, fitted, n_neighbors, metric)
           if len(rest) else None)
    return {"rows": rest, **(out or {})}


def kept_density(stages_dir, key: str, compute) -> tuple[np.ndarray, float, bool]:
    """``compute()`` → (log_dk, dimension), or what ``stages_dir/dask_density.npz`` kept under ``key``
    (kept as :mod:`raregal.discovery.stages` keeps the one-machine stages)."""
    from raregal.discovery.stages import load_keyed, save_keyed

    path = None if stages_dir is None else Path(stages_dir) / "dask_density.npz"
    found = None if path is None else load_keyed(path, key, "density")
    if found is not None:
        return found["log_dk"], float(found["dimension"]), True
    log_dk, dim = compute()
    if path is not None:
        save_keyed(path, key, {"log_dk": log_dk, "dimension": np.array(dim)})
    return log_dk, dim, False


def check_dask_params(source, config, sample_size, n_workers=None) -> int:
    """Refuse, before any cluster starts, what a search on Dask cannot do; the sample size as an int."""
    from raregal.discovery.distances import check_metric
    from raregal.validation import Integer, check_value

    check_value("dask_sample", sample_size, Integer(1000))
    check_value("dask_workers", n_workers, Integer(1, none_ok=True))
    partitions.parquet_names(source)
    try:
        check_metric(config.metric)
    except Exception as err:
        raise InputError(f"--dask builds its own k-NN graph, for the euclidean, cosine and correlation metrics, "
                         f"not metric={config.metric!r}", param=("metric", "dask")) from err
    if config.n_neighbors < 3:
        raise InputError(f"n_neighbors={config.n_neighbors}: --dask estimates densities from at least 3 "
                         "neighbours", param=("n_neighbors", "dask"))
    return int(sample_size)


def search_dask(source, config, client, *, sample_size: int = DEFAULT_SAMPLE, stages_dir=None, timer=None):
    """Search the Parquet table at ``source`` on the Dask ``client``'s cluster; a :class:`SearchResult`, nothing written.

    ``config``: a :class:`~raregal.discovery.config.SearchConfig` or dict (default: the paper's).
    ``sample_size``: the galaxies the layout and HDBSCAN are fitted on (all when fewer are kept);
    the rest are placed (see the module). ``stages_dir``: where finished stages are kept (a killed
    run resumes). The result's ``estimator`` is the fit on the sample; ``run.clusters`` has every
    galaxy, with ``fitted`` (bool) saying which were in the sample. Workers should run one thread
    each (as ``LocalCluster(threads_per_worker=1)`` and ``raregal embed --dask`` start them): each
    task runs its own threads and limits BLAS to one, which threads of one process would share.
    """
    from raregal.discovery.estimator import RareClassSearch
    from raregal.discovery.pipeline import _check_kept, _config, check_representation
    from raregal.timing import StageTimer

    config = _config(config, {})
    sample_size = check_dask_params(source, config, sample_size)
    timer = timer or StageTimer()
    est = RareClassSearch(**config.estimator_params(), verbose=True, stages_dir=stages_dir)
    with timer.stage("read"):
        table = read(client, source, config)
    log.info("pre-filter: %s", ", ".join(f"{k} {v}" for k, v in table.counts.items()))
    _check_kept(est, table.counts, table.cuts)
    fitted_rows, log_dk, info = _sample(client, table, config, est._seed(), sample_size, stages_dir, timer)
    X_fit = gather_rows(client, table.X, table.offsets, fitted_rows)
    kept_ids = table.meta["id_str"].to_numpy()[table.meta["kept"].to_numpy()]
    check_representation(X_fit, kept_ids[fitted_rows], config)
    est.check_size(len(X_fit))
    est.fit(X_fit)
    timer.seconds.update(est.timings_)
    timer.peak_mib.update(est.memory_mib_)
    with timer.stage("place"):
        full = _place(client, table, fitted_rows, log_dk, X_fit, est, config)
    return _result(source, table, est, full, X_fit, fitted_rows, config, timer, info)


def _sample(client, table: Table, config, seed, sample_size, stages_dir, timer):
    """The kept rows the layout is fitted on (sorted), their log k-th neighbour distances, and what the summary says of the draw."""
    n = int(table.offsets[-1])
    if n <= sample_size:
        log.info("sample: all %s kept galaxies are fitted (--dask-sample %s)", f"{n:,}", f"{sample_size:,}")
        return np.arange(n), None, {"sample_size": sample_size, "n_fitted": n, "n_placed": 0}
    key = hashlib.blake2b(json.dumps([table.key, config.features, config.n_neighbors, config.metric, seed,
                                      library_versions()], sort_keys=True, default=str).encode()).hexdigest()
    stats: dict = {}
    with timer.stage("knn_dask"):
        log_dk, dim, resumed = kept_density(stages_dir, key, lambda: row_density(
            client, table.X, table.offsets, config.n_neighbors, config.metric, seed, stats=stats))
    p = density.inclusion_probabilities(log_dk, dim, sample_size)
    rows = np.flatnonzero(density.draw(p, seed))
    log.info("sample: %s of %s kept galaxies (density-biased, intrinsic dimension %.1f; %s kept whole)",
             f"{len(rows):,}", f"{n:,}", dim, f"{int((p >= 1).sum()):,}")
    return rows, log_dk, {"sample_size": sample_size, "n_fitted": int(len(rows)), "n_placed": int(n - len(rows)),
                          "intrinsic_dimension": dim, "n_certain": int((p >= 1).sum()),
                          "uniform_rate": float(p.min()), "resumed_density": resumed, "knn": stats or None}


def _place(client, table: Table, fitted_rows, log_dk, X_fit, est, config) -> dict:
    """Every kept row's cluster, probability and coordinates: the fit's for the sample, placed for the rest."""
    from raregal.discovery.distances import metric_space
    from raregal.discovery.knn import InvertedFile

    n = int(table.offsets[-1])
    full = {"labels_": np.full(n, -1, np.int64), "probabilities_": np.zeros(n, np.float32),
            "embedding_": np.zeros((n, est.embedding_.shape[1]), np.float32),
            "embedding_2d_": None if est.embedding_2d_ is None else np.zeros((n, 2), np.float32)}
    full["labels_"][fitted_rows], full["probabilities_"][fitted_rows] = est.labels_, est.probabilities_
    full["embedding_"][fitted_rows] = est.embedding_
    if est.embedding_2d_ is not None:
        full["embedding_2d_"][fitted_rows] = est.embedding_2d_
    if len(fitted_rows) == n:
        return full
    fitted = {"labels": est.labels_, "probabilities": est.probabilities_, "embedding": est.embedding_,
              "embedding_2d": est.embedding_2d_,
              "reach": placement.cluster_reach(est.labels_, est.knn_[0], est.knn_[1], est.n_clusters_),
              "core_log_dk": placement.core_density(est.labels_, log_dk[fitted_rows], est.n_clusters_)}
    index = InvertedFile(metric_space(X_fit, config.metric), random_state=est._seed())
    index_f, fitted_f = client.scatter([index, fitted], broadcast=True)
    offsets = table.offsets
    futures = [client.submit(place_partition, x, log_dk[offsets[p]:offsets[p + 1]], local, index_f, fitted_f,
                             config.n_neighbors, config.metric)
               for p, (x, local) in enumerate(zip(table.X, by_partition(fitted_rows, offsets)))]
    for p, out in enumerate(client.gather(futures)):
        if len(out["rows"]) == 0:
            continue
        rows = offsets[p] + out["rows"]
        for name, key in (("labels_", "labels"), ("probabilities_", "probabilities"), ("embedding_", "embedding"),
                          ("embedding_2d_", "embedding_2d")):
            if full[name] is not None:
                full[name][rows] = out[key]
    return full


def _result(source, table: Table, est, full, X_fit, fitted_rows, config, timer, info):
    """The :class:`SearchResult` of a distributed search: checks on the sample, the table of every galaxy."""
    from types import SimpleNamespace

    from raregal.discovery.pipeline import finish_search

    kept = table.meta["kept"].to_numpy()
    whole = SimpleNamespace(**full, n_clusters_=est.n_clusters_, layout_=est.layout_,
                            resumed_stages_=est.resumed_stages_)
    fitted = np.zeros(len(table.meta), bool)
    fitted[np.flatnonzero(kept)[fitted_rows]] = True
    result = finish_search(table.meta.drop(columns="kept"), kept, est, X_fit, config, source, table.counts,
                           timer, whole=whole, checks_frame=table.meta[kept].iloc[fitted_rows].reset_index(drop=True),
                           artifact_column=table.columns["artifact"], extra={"fitted": fitted},
                           summary={"distributed": info})
    log.info("%s of the kept galaxies were placed, not fitted", f"{info['n_placed']:,}")
    return result
