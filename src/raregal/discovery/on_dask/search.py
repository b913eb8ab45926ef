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
from operator import itemgetter
from pathlib import Path

import numpy as np
import pandas as pd

from raregal.discovery.on_dask import cell_knn, density, partitions, placement
from raregal.errors import InputError
from raregal.inputs.tables import ID

log = logging.getLogger("raregal")

#: Rows per k-NN block task (the blocks are groups of nearby cells).
BLOCK_ROWS = 100_000


def read(client, source, config) -> tuple[list, pd.DataFrame, dict, tuple, list]:
    """Read and pre-filter the table by partition: (X futures, the per-galaxy meta table, counts, cuts,
    kept rows per partition)."""
    import dask.dataframe as dd

    from raregal.discovery.prefilter import campaign_columns, paper_cuts

    names = partitions.parquet_names(source)
    columns = campaign_columns(names, config.campaign)
    cuts = paper_cuts(config.smooth_cut, config.edge_on_cut, config.artifact_cut, config.keep_artifacts,
                      config.keep_disturbed, columns)
    fractions = [c.column for c in cuts] + [c for cut in cuts for c in getattr(cut, "rescue_columns", ())]
    frames = dd.read_parquet(str(source), columns=partitions.wanted_columns(names, config.features, fractions)
                             ).to_delayed()
    parts = client.compute([_delayed(partitions.read_partition)(f, config.features, cuts, config.drop_invalid,
                                                                str(source), columns["artifact"]) for f in frames])
    metas = client.gather([client.submit(itemgetter("meta"), p) for p in parts])
    counts = partitions.add_counts(client.gather([client.submit(itemgetter("counts"), p) for p in parts]))
    X = [client.submit(itemgetter("X"), p) for p in parts]
    meta = pd.concat(metas, ignore_index=True)
    from raregal.inputs.tables import check_ids

    check_ids(meta, str(source))  # ids unique across partitions, not only within each
    return X, meta, counts, cuts, [int(m["kept"].sum()) for m in metas]


def _delayed(fn):
    from dask import delayed

    return delayed(fn, pure=True)


def offsets_of(kept_per_part: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(kept_per_part)]).astype(np.int64)


def gather_rows(client, X: list, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Kept rows by their global number (sorted), gathered from the partitions that hold them."""
    part = np.searchsorted(offsets, rows, side="right") - 1
    futures = [client.submit(partitions.take, X[p], rows[part == p] - offsets[p]) for p in np.unique(part)]
    return np.concatenate(client.gather(futures)) if futures else np.zeros((0, 0), np.float32)


def distributed_knn(client, X: list, offsets: np.ndarray, n_neighbors: int, metric: str, seed: int,
                    n_probe: int = 32, stats: dict | None = None) -> list:
    """The k-NN graph of all kept rows, as futures of :func:`cell_knn.block_knn` results (one per block).

    ``stats``, when given, gets ``n_blocks`` and ``rows_sent_per_row``: how many times each row is
    sent to a block task on average (its own block's and the blocks that probe its cell), the
    graph's network cost in units of the table.
    """
    from raregal.discovery.distances import metric_space

    n = int(offsets[-1])
    n_lists = cell_knn.n_cells(n)
    rows = cell_knn.sample_rows(n, n_lists, seed)
    sample = gather_rows(client, X, offsets, np.arange(n) if rows is None else rows)
    centroids = cell_knn.fit_centroids(metric_space(sample, metric), n_lists, seed)
    n_blocks = max(1, -(-n // BLOCK_ROWS))
    block_of_cell = cell_knn.cell_blocks(centroids, n_blocks, seed)
    n_blocks = int(block_of_cell.max()) + 1
    [centroids_f] = client.scatter([centroids], broadcast=True)
    P = [client.submit(metric_space, x, metric) for x in X]
    probes = [client.submit(cell_knn.partition_probes, p, centroids_f, n_probe) for p in P]
    need = np.logical_or.reduce(client.gather([client.submit(cell_knn.probed_cells, pr, block_of_cell, n_blocks)
                                               for pr in probes]))
    if stats is not None:
        sizes = np.sum(client.gather([client.submit(_cell_sizes, pr, len(centroids)) for pr in probes]), axis=0)
        stats.update(n_blocks=n_blocks, n_cells=len(centroids), rows_sent_per_row=float((need @ sizes).sum() / n))
    blocks = []
    for b in range(n_blocks):
        in_block = block_of_cell == b
        if not in_block.any():
            continue
        pieces = [client.submit(cell_knn.cut_piece, p, pr, int(offsets[i]), need[b], in_block)
                  for i, (p, pr) in enumerate(zip(P, probes))]
        blocks.append(client.submit(cell_knn.block_knn, pieces, centroids_f, n_probe, n_neighbors, metric))
    return blocks


def _cell_sizes(probes: np.ndarray, n_lists: int) -> np.ndarray:
    return np.bincount(probes[:, 0], minlength=n_lists)


def block_density(result: dict) -> dict:
    log_dk, inverse = density.log_distance_ratios(result["distances"])
    return {"index": result["index"], "log_dk": log_dk, "inverse": inverse}


def row_density(client, blocks: list, n: int) -> tuple[np.ndarray, float]:
    """(n,) log k-th neighbour distance of every kept row, and the data's intrinsic dimension."""
    log_dk, inverse = np.full(n, np.nan), np.full(n, np.nan)
    for part in client.gather([client.submit(block_density, b) for b in blocks]):
        log_dk[part["index"]], inverse[part["index"]] = part["log_dk"], part["inverse"]
    if np.isnan(log_dk).any():  # every kept row is the query of exactly one block
        raise RuntimeError(f"{int(np.isnan(log_dk).sum())} rows got no neighbours in the distributed k-NN graph")
    return log_dk, density.intrinsic_dimension(inverse)


def place_partition(X: np.ndarray, log_dk: np.ndarray, fitted_rows: np.ndarray, index, fitted: dict,
                    n_neighbors: int, metric: str) -> dict:
    """Coordinates and clusters of one partition's kept rows that were not fitted (``fitted_rows``: local rows that were)."""
    from raregal.discovery.distances import metric_space

    rest = np.setdiff1d(np.arange(len(X)), fitted_rows)
    out = (placement.place(metric_space(X[rest], metric), log_dk[rest], index, fitted, n_neighbors, metric)
           if len(rest) else None)
    return {"rows": rest, **(out or {})}


def stage_key(meta: pd.DataFrame, counts: dict, params: dict) -> str:
    """The key of the distributed stages: the table's ids and counts, and the parameters they depend on."""
    h = hashlib.blake2b(digest_size=16)
    h.update(pd.util.hash_pandas_object(meta[[ID, "kept"]], index=False).to_numpy().tobytes())
    h.update(json.dumps([counts, params], sort_keys=True, default=str).encode())
    return h.hexdigest()


def kept_density(stages_dir, key: str, compute) -> tuple[np.ndarray, float, bool]:
    """``compute()`` → (log_dk, dimension), or what ``stages_dir/dask_density.npz`` kept under ``key``."""
    from raregal.atomic import atomic_path

    path = None if stages_dir is None else Path(stages_dir) / "dask_density.npz"
    if path is not None and path.exists():
        try:
            with np.load(path) as npz:
                if str(npz["_key"]) == key:
                    log.info("%-10s resumed from %s", "density", path)
                    return npz["log_dk"], float(npz["dimension"]), True
        except (OSError, KeyError, ValueError):
            pass
    log_dk, dim = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, _key=np.array(key), log_dk=log_dk, dimension=np.array(dim))
    return log_dk, dim, False


def check_sample_size(sample_size) -> int:
    from raregal.validation import Integer, check_value

    check_value("dask_sample", sample_size, Integer(1000))
    return int(sample_size)




def search_dask(source, config, client, *, sample_size: int = 1_000_000, stages_dir=None, timer=None):
    """Search the Parquet table at ``source`` on the Dask ``client``'s cluster; a :class:`SearchResult`, nothing written.

    ``config``: a :class:`~raregal.discovery.config.SearchConfig` or dict (default: the paper's).
    ``sample_size``: the galaxies the layout and HDBSCAN are fitted on (all when fewer are kept);
    the rest are placed (see the module). ``stages_dir``: where finished stages are kept (a killed
    run resumes). The result's ``estimator`` is the fit on the sample; ``run.clusters`` has every
    galaxy, with ``fitted`` (bool) saying which were in the sample.
    """
    from raregal.discovery.estimator import RareClassSearch
    from raregal.discovery.pipeline import _check_kept, _config, check_representation
    from raregal.timing import StageTimer

    config = _config(config, {})
    sample_size = check_sample_size(sample_size)
    timer = timer or StageTimer()
    est = RareClassSearch(**config.estimator_params(), verbose=True, stages_dir=stages_dir)
    with timer.stage("read"):
        X, meta, counts, cuts, kept_per_part = read(client, source, config)
    log.info("pre-filter: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
    _check_kept(est, counts, cuts)
    offsets = offsets_of(kept_per_part)
    fitted_rows, log_dk, info = _sample(client, X, offsets, meta, counts, config, est._seed(), sample_size, stages_dir, timer)
    X_fit = gather_rows(client, X, offsets, fitted_rows)
    kept_ids = meta[ID].to_numpy()[meta["kept"].to_numpy()]
    check_representation(X_fit, kept_ids[fitted_rows], config)
    est.check_size(len(X_fit))
    est.fit(X_fit)
    timer.seconds.update(est.timings_)
    timer.peak_mib.update(est.memory_mib_)
    with timer.stage("place"):
        full = _place(client, X, offsets, fitted_rows, log_dk, X_fit, est, config)
    return _result(source, meta, counts, est, full, X_fit, fitted_rows, config, timer, info)


def _sample(client, X, offsets, meta, counts, config, seed, sample_size, stages_dir, timer):
    """The kept rows the layout is fitted on (sorted) and what the summary says of the draw."""
    n = int(offsets[-1])
    if n <= sample_size:
        log.info("sample: all %s kept galaxies are fitted (--dask-sample %s)", f"{n:,}", f"{sample_size:,}")
        return np.arange(n), None, {"sample_size": sample_size, "n_fitted": n, "n_placed": 0}
    key = stage_key(meta, counts, {"n_neighbors": config.n_neighbors, "metric": config.metric, "seed": seed})
    stats: dict = {}
    with timer.stage("knn_dask"):
        log_dk, dim, resumed = kept_density(stages_dir, key, lambda: row_density(
            client, distributed_knn(client, X, offsets, config.n_neighbors, config.metric, seed, stats=stats), n))
    p = density.inclusion_probabilities(log_dk, dim, sample_size)
    rows = np.flatnonzero(density.draw(p, seed))
    log.info("sample: %s of %s kept galaxies (density-biased, intrinsic dimension %.1f; %s kept whole)",
             f"{len(rows):,}", f"{n:,}", dim, f"{int((p >= 1).sum()):,}")
    return rows, log_dk, {"sample_size": sample_size, "n_fitted": int(len(rows)), "n_placed": int(n - len(rows)),
                  "intrinsic_dimension": dim, "n_certain": int((p >= 1).sum()),
                  "uniform_rate": float(p.min()), "resumed_density": resumed, "knn": stats or None}


def _place(client, X, offsets, fitted_rows, log_dk, X_fit, est, config) -> dict:
    """Every kept row's cluster, probability and coordinates: the fit's for the sample, placed for the rest."""
    from raregal.discovery.distances import metric_space
    from raregal.discovery.knn import InvertedFile

    n = int(offsets[-1])
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
    part_rows = [fitted_rows[(fitted_rows >= offsets[p]) & (fitted_rows < offsets[p + 1])] - offsets[p]
                 for p in range(len(X))]
    futures = [client.submit(place_partition, x, log_dk[offsets[p]:offsets[p + 1]], r, index_f, fitted_f,
                             config.n_neighbors, config.metric) for p, (x, r) in enumerate(zip(X, part_rows))]
    for p, out in enumerate(client.gather(futures)):
        if len(out["rows"]) == 0:
            continue
        rows = offsets[p] + out["rows"]
        for name, key in (("labels_", "labels"), ("probabilities_", "probabilities"), ("embedding_", "embedding"),
                          ("embedding_2d_", "embedding_2d")):
            if full[name] is not None:
                full[name][rows] = out[key]
    return full


def _result(source, meta, counts, est, full, X_fit, fitted_rows, config, timer, info):
    """The :class:`SearchResult` of a distributed search: checks on the sample, the table of every galaxy."""
    from types import SimpleNamespace

    from raregal.discovery.checks.per_cluster import check_clusters
    from raregal.discovery.pipeline import (SearchResult, _score, _search_summary, cluster_entries,
                                            galaxy_table)
    from raregal.discovery.prefilter import campaign_columns
    from raregal.runs.model import Run, cluster_info

    kept = meta["kept"].to_numpy()
    columns = campaign_columns(meta.columns, config.campaign) if config.campaign else campaign_columns(meta.columns)
    fit_frame = meta[kept].iloc[fitted_rows].reset_index(drop=True)
    checks = check_clusters(est, X_fit, fit_frame, None, stability=config.stability,
                            unstable_below=config.unstable_below, artifact_cut=config.artifact_cut,
                            merge_max_tree_distance=config.merge_max_tree_distance,
                            merge_max_centroid_ratio=config.merge_max_centroid_ratio, timer=timer,
                            artifact_column=columns["artifact"])
    whole = SimpleNamespace(**full, n_clusters_=est.n_clusters_, layout_=est.layout_,
                            resumed_stages_=est.resumed_stages_)
    table = galaxy_table(meta.drop(columns="kept"), kept, whole)
    fitted = np.zeros(len(meta), bool)
    fitted[np.flatnonzero(kept)[fitted_rows]] = True
    table["fitted"] = fitted
    table, cinfo, entries = checks.annotate(table, cluster_info(table, cluster_entries(est)))
    summary = {**_search_summary(source, meta, X_fit, counts, whole), **entries, "distributed": info}
    if "true_class" in meta.columns:
        summary["metrics"] = _score(meta["true_class"].to_numpy(), table["cluster"].to_numpy())
    run = Run(clusters=table, cluster_info=cinfo, tree=est.condensed_tree_, merges=checks.merges,
              parameters=config.to_dict(), timings=timer.totals(), summary=summary)
    log.info("%d clusters; %d of %d kept galaxies clustered (%.1f%%), %s of them placed", est.n_clusters_,
             summary["n_clustered"], counts["kept"], 100 * summary["fraction_clustered"], f"{info['n_placed']:,}")
    return SearchResult(estimator=est, run=run, config=config, kept=kept, counts=counts)
