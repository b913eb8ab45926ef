"""Find more like these: nearest neighbours of a few galaxies in representation space.

The paper's authors suggest that a person who has found a few interesting galaxies should be
able to ask for more of them. :func:`similar` ranks the galaxies of the **whole** catalog (every
row of the representation table, including those the pre-filter dropped) by their distance to
the query galaxies: the members of a cluster of a run, or any ids.

Distance to a set of query galaxies is the distance to the **nearest** query member (default,
``query="nearest"``): a rare class can be elongated or made of several lumps, and its centroid
may lie in a gap between them where no member is; the nearest-member distance follows the
class's own shape and, for a single query galaxy, is the ordinary distance. ``query="centroid"``
ranks by distance to the members' mean instead (one query, cheaper for very large sets).
The query galaxies themselves are never returned.

One index, :class:`SimilarityIndex`, answers both ``raregal similar`` and the explorer's "more like
this": built from a run (:meth:`SimilarityIndex.from_run`), it covers every row of the run's
representation table, takes the representation as the search took it (the run's ``features``)
and ranks in the run's ``metric`` (cosine and correlation by Euclidean search over rescaled rows,
:func:`metric_space`; distances are reported in the metric's own terms).

Indexes, both the search's own (:mod:`raregal.discovery.knn`, the same bits at any thread
count): an exact blocked scan for small catalogs and small queries; the inverted file
(:class:`~raregal.discovery.knn.InvertedFile`, approximate, ``nprobe`` cells searched) when the
catalog has at least :data:`EXACT_BELOW` rows and the query needs at least :data:`IVF_WORTH`
distance evaluations. Measured on 300k 128-d rows (2 busy cores, ``benchmarks/beyond_paper.py``):
a 100-galaxy query takes 0.9 s exactly, while building the inverted file takes 11 s and then
answers it in 0.1 s with the same top 100, so it pays off only for big queries (a large cluster)
over a large catalog. For the nearest-member rule each query member asks
for ``k + n_query`` neighbours, which is exactly enough for an exact top ``k``: any galaxy in the
true top k has at most ``k - 1`` non-query galaxies closer to its nearest query member.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from raregal.inputs import sky
from raregal.inputs.tables import (FILE_LOC, ID, read_table, representation_columns, representation_table,
                                   source_columns)
from raregal.discovery.distances import metric_distance, metric_space
from raregal.errors import InputError
from raregal.validation import Integer, check_value
from raregal.runs.model import is_run_dir, read_run

log = logging.getLogger("raregal")

#: Catalogs with fewer rows are always searched exactly by ``index="auto"``.
EXACT_BELOW = 200_000
#: Above EXACT_BELOW rows, ``index="auto"`` builds the inverted file when n_query × n_rows is at
#: least this (about half a minute of brute force on two cores at 128-d).
IVF_WORTH = 1_000_000_000
INDEXES = ("auto", "exact", "flat", "ivf")
#: Candidates beyond k that the float32 scan keeps for the exact float64 ranking (as the search's
#: exact k-NN graph does): rows far from the origin lose float32 precision in |q|^2 + |r|^2 - 2 q.r.
MARGIN = 16
QUERIES = ("nearest", "centroid")
_BATCH = 256  # query members searched per batch (bounds memory to batch x (k + n_query) pairs)


def index_kind(kind: str, n_rows: int, n_queries: int) -> str:
    """The index ``kind`` stands for: ``"auto"`` is ivf for a big query over a big catalog, else exact."""
    if kind not in INDEXES:
        raise InputError(f"unknown index {kind!r}; choose from {INDEXES}")
    if kind == "auto":
        return "ivf" if n_rows >= EXACT_BELOW and n_queries * n_rows >= IVF_WORTH else "exact"
    return kind


class NeighbourSearch:
    """k-nearest-neighbour search over the rows of ``X`` (N, D), exact or with an inverted file.

    ``kind``: ``"exact"`` (:func:`raregal.discovery.knn.nearest_rows`, the blocked scan of the
    search's exact k-NN graph; ``"flat"`` is the same, kept as a name for scripts of earlier
    versions, which used faiss for it), ``"ivf"`` (:class:`raregal.discovery.knn.InvertedFile`,
    the search's own inverted file: ``nlist`` cells, ``nprobe`` searched; approximate) or
    ``"auto"`` (ivf when there are at least :data:`EXACT_BELOW` rows and ``n_queries`` × rows ≥
    :data:`IVF_WORTH`, else exact). Distances are Euclidean; both give the same bits at any thread
    count, ties go to the lower row.
    """

    def __init__(self, X: np.ndarray, kind: str = "auto", nlist: int | None = None, nprobe: int = 32,
                 seed: int = 0, n_queries: int = 1):
        check_value("nprobe", nprobe, Integer(1))
        # centred (no distance changes): float32 products keep their precision far from the origin
        self.offset = np.asarray(X, dtype=np.float64).mean(axis=0) if len(X) else np.zeros(np.shape(X)[1])
        self.X = np.ascontiguousarray(np.asarray(X, dtype=np.float32) - self.offset.astype(np.float32))
        self.kind = index_kind(kind, len(self.X), n_queries)
        self._sq = np.einsum("ij,ij->i", self.X, self.X, dtype=np.float32)
        if self.kind == "ivf":
            from raregal.discovery.knn import InvertedFile

            self._ivf = InvertedFile(self.X, nlist, nprobe, seed)
            self.nlist = self._ivf.n_lists

    def search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest rows of each query (M, D): ``(distances, rows)``, each (M, k), nearest first.

        Missing neighbours (an approximate index that found fewer than k) have row -1, distance inf.
        """
        return self._scan(np.asarray(Q, dtype=np.float64) - self.offset, k)

    def search_rows(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` for queries that are rows of the index."""
        return self._scan(self.X[rows], k)

    def _scan(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` for queries already centred as :attr:`X` is."""
        from raregal.discovery.knn import nearest_rows, run_blocks

        Q = np.ascontiguousarray(Q, dtype=np.float32)
        k = int(min(k, len(self.X)))
        m = min(k + MARGIN, len(self.X))  # float32 picks candidates, float64 ranks them: a margin keeps it exact
        if self.kind == "ivf":
            rows, d2 = self._ivf.search(Q, m, keep=k)
        else:
            sq_q = np.einsum("ij,ij->i", Q, Q, dtype=np.float32)
            blocks = [np.arange(s, min(s + 64, len(Q))) for s in range(0, len(Q), 64)]
            parts = run_blocks(lambda r: nearest_rows(Q[r], sq_q[r], self.X, self._sq, np.full(len(r), -2), m), blocks)
            rows = np.concatenate([p[0][:, :k] for p in parts]) if parts else np.empty((0, k), np.int64)
            d2 = np.concatenate([p[1][:, :k] for p in parts]) if parts else np.empty((0, k))
        dist = np.sqrt(np.maximum(d2, 0.0))
        dist[rows < 0] = np.inf
        return dist, rows.astype(np.int64)


def rank_neighbours(X: np.ndarray, query_rows: np.ndarray, k: int, query: str = "nearest",
                    index: NeighbourSearch | str = "auto", progress: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank rows of ``X`` (N, D) by distance to the rows ``query_rows`` (M,), queries left out.

    Returns ``(rows, distances, nearest)``, each of length ≤ ``k``, nearest first; ``nearest`` is
    the query row each candidate is closest to (-1 for ``query="centroid"``). Ties go to the
    lower row number.
    """
    if query not in QUERIES:
        raise InputError(f"unknown query rule {query!r}; choose from {QUERIES}")
    query_rows = np.unique(np.asarray(query_rows, dtype=np.int64))
    n_queries = 1 if query == "centroid" else len(query_rows)
    searcher = index if isinstance(index, NeighbourSearch) else NeighbourSearch(X, index, n_queries=n_queries)
    n = len(searcher.X)
    want = int(min(k + len(query_rows), n))
    best = np.full(n, np.inf)
    who = np.full(n, -1, dtype=np.int64)
    if query == "centroid":
        dist, rows = searcher._scan(searcher.X[query_rows].astype(np.float64).mean(axis=0)[None, :], want)
        ok = rows[0] >= 0
        best[rows[0][ok]] = dist[0][ok]
    else:
        batches = range(0, len(query_rows), _BATCH)
        if progress and len(query_rows) > _BATCH:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="similar", unit="batch")
        for start in batches:
            q = query_rows[start:start + _BATCH]
            dist, rows = searcher.search_rows(q, want)
            qid = np.repeat(q, rows.shape[1])
            rows, dist = rows.ravel(), dist.ravel()
            ok = (rows >= 0) & (dist < best[np.maximum(rows, 0)])
            rows, dist, qid = rows[ok], dist[ok], qid[ok]
            order = np.lexsort((-qid, -dist))  # largest first, so the smallest distance is written last
            best[rows[order]] = dist[order]
            who[rows[order]] = qid[order]
    best[query_rows] = np.inf
    found = np.flatnonzero(np.isfinite(best))
    order = found[np.lexsort((found, best[found]))][:k]
    return order, best[order], who[order]


def _cap_k(k: int, n_candidates: int) -> int:
    """``k``, or the number of candidates when fewer (said with a warning, never silently)."""
    if n_candidates < 1:
        raise InputError("every galaxy of the table is a query galaxy: there is nothing else to rank")
    if k > n_candidates:
        log.warning("similar: k=%d is more than the %d galaxies there are besides the query galaxies; "
                    "returning all %d", k, n_candidates, n_candidates)
    return min(k, n_candidates)


@dataclass
class Neighbours:
    """The answer of :meth:`SimilarityIndex.query`, nearest first.

    ``rows`` are rows of the index's ``table``, ``ids`` their ``id_str``, ``distance`` in the
    metric's terms (cosine distance for a cosine run), ``nearest`` the table row of the query
    galaxy each is closest to (-1 for ``query="centroid"``).
    """

    rows: np.ndarray
    ids: np.ndarray
    distance: np.ndarray
    nearest: np.ndarray


class SimilarityIndex:
    """Nearest neighbours over every row of a representation table, in the run's metric.

    The one index behind ``raregal similar`` (:func:`similar`) and the explorer's "more like
    this". It holds all rows of the table (those the pre-filter dropped too), the representation
    chosen as the search chose it (:func:`raregal.inputs.tables.feature_matrix` with the run's
    ``features``: ``feat_*`` columns, a prefix or a list column) and compares them in the run's
    ``metric`` (cosine and correlation through :func:`metric_space`, so that every index kind ranks
    by the metric). Rows with a non-finite representation are left out (with a warning).

    ``table`` holds the table's other columns (``id_str`` among them; the representation is in ``X``,
    one row per index position, ``rows`` maps positions to table rows). Build it with :meth:`from_run` (a run directory or a loaded run)
    or from a table; ask it with :meth:`query`. ``index``/``nprobe``: see :class:`NeighbourSearch`;
    its search structure is made on the first query and kept for the next ones of the same kind.
    """

    def __init__(self, table, features: str | None = None, metric: str = "euclidean",
                 index: str = "auto", nprobe: int = 32, columns=None):
        index_kind(index, 0, 0)  # an unknown kind or nprobe fails before any work
        check_value("nprobe", nprobe, Integer(1))
        table, X = representation_table(table, features, columns=columns)
        self.ids = pd.Index(table[ID])
        valid = np.isfinite(X).all(axis=1)
        if not valid.all():
            log.warning("similar: %d rows with NaN/inf features are left out", int((~valid).sum()))
        # the table's other columns (the representation lives on only in X)
        self.table = table.drop(columns=representation_columns(table.columns, features))
        self.features, self.metric, self.index, self.nprobe = features, metric, index, nprobe
        self.rows = np.flatnonzero(valid)  # index position -> table row
        self.X = metric_space(X[valid], metric)
        self._position = np.full(len(table), -1, np.int64)  # table row -> index position (-1: left out)
        self._position[self.rows] = np.arange(len(self.rows))
        self._searchers: dict[str, NeighbourSearch] = {}

    @classmethod
    def from_run(cls, run, reps=None, features: str | None = None, columns: list[str] | None = (),
                 **kw) -> SimilarityIndex:
        """The index of a run: its representation table (``summary["input"]``, or ``reps`` when it moved),
        its ``features`` and ``metric`` parameters (``features`` given here wins).

        ``run``: a run directory, a :class:`~raregal.runs.model.Run` (also one not yet written, or a
        :class:`~raregal.discovery.pipeline.SearchResult`) or one read with its images (:func:`raregal.runs.with_images.load_run`). ``columns``: table columns
        to keep besides ``id_str`` and the representation (``None``: all of them); only those are read
        from a Parquet table.
        """
        run = read_run(run) if isinstance(run, (str, os.PathLike)) else getattr(run, "run", run)  # SearchResult
        path, summary, params = run.path or "the run", run.summary, run.parameters or {}
        table_path = reps or summary.get("input")
        if not table_path or not Path(table_path).exists():
            raise InputError(f"{path}: the run's representation table {table_path!r} is gone; give it with --reps")
        features = features or params.get("features")
        return cls(table_path, features, params.get("metric") or "euclidean", columns=columns, **kw)

    def covers(self, ids) -> np.ndarray:
        """Whether each of ``ids`` is in the index (in the table, with a finite representation)."""
        rows = self.ids.get_indexer(pd.Index([str(i) for i in ids]))
        return (rows >= 0) & (self._position[np.maximum(rows, 0)] >= 0)

    def table_rows(self, ids) -> np.ndarray:
        """The table rows of ``ids``; InputError naming those not in the table."""
        ids = [str(i) for i in ids]
        rows = self.ids.get_indexer(pd.Index(ids))
        if (rows < 0).any():
            missing = [i for i, r in zip(ids, rows) if r < 0]
            raise InputError(f"{len(missing)} id(s) not in the representation table: {', '.join(missing[:10])}")
        return rows

    def searcher(self, n_queries: int) -> NeighbourSearch:
        """The search structure for a query of ``n_queries`` rows (made once per kind)."""
        kind = index_kind(self.index, len(self.X), n_queries)
        if kind not in self._searchers:
            self._searchers[kind] = NeighbourSearch(self.X, kind, nprobe=self.nprobe)
        return self._searchers[kind]

    def query(self, rows=None, *, ids=None, k: int = 12, query: str = "nearest",
              progress: bool = False) -> Neighbours:
        """The ``k`` galaxies nearest the query galaxies (table ``rows``, or ``ids``), queries left out.

        ``query``: ``"nearest"`` (distance to the nearest query galaxy) or ``"centroid"`` (to their
        mean, in :func:`metric_space`). Query galaxies without a finite representation are skipped;
        InputError when none is left, or for ids not in the table. ``k`` larger than the other
        galaxies there are is capped, with a warning.
        """
        if (rows is None) == (ids is None):
            raise InputError("give the query galaxies as rows or as ids, not both or neither")
        rows = self.table_rows(ids) if ids is not None else np.asarray(rows, np.int64)
        qpos = np.unique(self._position[rows])
        qpos = qpos[qpos >= 0]
        if len(qpos) == 0:
            raise InputError("none of the query galaxies has a valid representation in the table")
        k = _cap_k(int(k), len(self.X) - len(qpos))
        searcher = self.searcher(1 if query == "centroid" else len(qpos))
        log.debug("similar: %s index over %d galaxies, %d query galaxies", searcher.kind, len(self.X), len(qpos))
        found, dist, who = rank_neighbours(self.X, qpos, k, query, searcher, progress=progress)
        out = self.rows[found]
        return Neighbours(rows=out, ids=self.ids[out].to_numpy(), distance=metric_distance(dist, self.metric),
                          nearest=np.where(who >= 0, self.rows[np.maximum(who, 0)], -1))


def load_source(source, reps=None, features=None, index: str = "auto", nprobe: int = 32
                ) -> tuple[SimilarityIndex, pd.DataFrame | None]:
    """(index over the whole table, run clusters or None) for a run directory, a table path or a DataFrame.

    The one loader of ``similar`` and ``guide``: a run folder's representation table (every row,
    in the run's ``features`` and ``metric``), or a table as it is (Euclidean).
    """
    kw = dict(index=index, nprobe=nprobe)
    _check_not_a_broken_run(source)
    if is_run_dir(source):
        run = read_run(source)
        return SimilarityIndex.from_run(run, reps, features, columns=None, **kw), run.clusters
    if reps is not None:
        raise InputError("--reps is only for a run directory; give the table itself as the source")
    table = source if isinstance(source, pd.DataFrame) else read_table(source)
    return SimilarityIndex(table, features, **kw), None


def _check_not_a_broken_run(source) -> None:
    """A run folder that lost a file is named as such (not read as a table folder)."""
    from raregal.runs.folder import folder_kind
    from raregal.runs.model import check_run_dir

    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir() and folder_kind(source) == "run":
        check_run_dir(source)


def _query_ids(clusters, table_ids: pd.Index, cluster, ids) -> list[str]:
    if (cluster is None) == (ids is None or len(ids) == 0):
        raise InputError("give either a cluster (--cluster C) or ids (--ids ID [ID ...]), not both or neither")
    if cluster is not None:
        if clusters is None:
            raise InputError("--cluster needs a run directory (written by `raregal search`) as the source")
        found = sorted(int(c) for c in clusters["cluster"].unique() if c >= 0)
        if int(cluster) not in found:
            has = f"it has clusters {found[0]}..{found[-1]}" if found else "it has no clusters (every galaxy is -1)"
            raise InputError(f"no cluster {cluster} in this run; {has}")
        return clusters.loc[clusters["cluster"] == int(cluster), ID].astype(str).tolist()
    return list(dict.fromkeys(str(i) for i in ids))


def similar(source, cluster: int | None = None, ids=None, k: int = 50, *, reps=None,
            features: str | None = None, query: str = "nearest", index: str = "auto", nprobe: int = 32,
            progress: bool = True) -> pd.DataFrame:
    """Galaxies most like a cluster of a run, or like given galaxies.

    Parameters
    ----------
    source : a run directory (``raregal search`` output: its input table is searched, all rows,
        also those the pre-filter dropped, in the run's metric), a representation table path, or a
        DataFrame with ``id_str`` and the representation (Euclidean).
    cluster : a cluster of the run, used as the query (its members); or
    ids : ids (``id_str``) of the query galaxies.
    k : number of candidates to return.
    reps : the run's representation table, when it moved since the run.
    features : representation column(s) (default: the run's, else ``feat_*``).
    query : ``"nearest"`` (distance to the nearest query galaxy) or ``"centroid"``.
    index : ``"auto"``, ``"exact"``, ``"flat"`` or ``"ivf"`` (see :class:`NeighbourSearch`).

    Returns
    -------
    DataFrame with ``id_str``, ``rank`` (1 = most similar), ``distance`` (in the run's metric:
    cosine distance for a run made with ``metric="cosine"``), ``nearest_query`` (the closest query
    galaxy; empty for ``query="centroid"``), and when known ``cluster``/``kept`` (from the run),
    where the image is (``file_loc``, or ``image_shard``/``image_row`` for a catalog with the
    images inside), ``true_class`` and ``ra``/``dec`` (degrees). ``.attrs["query_ids"]`` lists the
    query galaxies, ``.attrs["query_images"]`` where their images are.
    """
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    if query not in QUERIES:
        raise InputError(f"unknown query rule {query!r}; choose from {QUERIES}")
    found, clusters = load_source(source, reps, features, index, nprobe)
    table = sky.with_coordinates(found.table, "the representation table")
    qids = _query_ids(clusters, found.ids, cluster, ids)
    if cluster is not None:  # members the table lacks (it changed since the run) are left out, with a warning
        inside = [i for i in qids if i in found.ids]
        if len(inside) < len(qids):
            log.warning("similar: %d members of cluster %s are not in the representation table; left out",
                        len(qids) - len(inside), cluster)
        qids = inside
    near = found.query(ids=qids, k=int(k), query=query, progress=progress)
    out = pd.DataFrame({ID: near.ids, "rank": np.arange(1, len(near.rows) + 1), "distance": near.distance,
                        "nearest_query": [found.ids[q] if q >= 0 else "" for q in near.nearest]})
    describe_rows(out, near.rows, table, clusters)
    out.attrs["query_ids"] = qids
    _attach_query_images(out, table, clusters, qids)
    return out


def describe_rows(out: pd.DataFrame, rows: np.ndarray, table: pd.DataFrame, clusters) -> pd.DataFrame:
    """Add to ``out`` (one row per table row ``rows``, with ``id_str``) what is known of each galaxy:
    ``cluster``/``kept`` (from the run), where its image is, ``true_class`` and ``ra``/``dec``."""
    if clusters is not None:
        extra = clusters.set_index(clusters[ID].astype(str))
        for col in ("cluster", "kept"):
            if col in extra.columns:
                out[col] = extra[col].reindex(out[ID]).to_numpy()
    _attach_images(out, table, clusters)
    for col in ("true_class", sky.RA, sky.DEC):
        if col in table.columns:
            out[col] = table[col].to_numpy()[rows]
        elif clusters is not None and col in clusters.columns:
            out[col] = clusters.set_index(clusters[ID].astype(str))[col].reindex(out[ID]).to_numpy()
    return out


def _images(table, clusters) -> pd.DataFrame | None:
    """``id_str`` + where the images are (:func:`raregal.inputs.tables.source_columns`), indexed by id, from the table
    or else the run; None when neither says."""
    for frame in (table, clusters):
        if frame is not None and source_columns(frame):
            where = frame[[ID] + source_columns(frame)]
            return where.set_index(where[ID].astype(str)).drop(columns=[ID])
    return None


def _attach_images(out: pd.DataFrame, table, clusters) -> None:
    """Add to ``out`` where each candidate's image is (file_loc, or image_shard + image_row)."""
    images = _images(table, clusters)
    for col in images.columns if images is not None else []:
        out[col] = images[col].reindex(out[ID]).to_numpy()


def _attach_query_images(out: pd.DataFrame, table, clusters, qids: list[str]) -> None:
    """``out.attrs``: ``query_file_loc`` (paths or None) and ``query_images`` (id_str + where, for image_sources)."""
    images = _images(table, clusters)
    query = images.reindex(qids) if images is not None else None
    has_loc = query is not None and FILE_LOC in query.columns
    out.attrs["query_file_loc"] = query[FILE_LOC].tolist() if has_loc else [None] * len(qids)
    if query is not None:
        out.attrs["query_images"] = {ID: list(qids), **{c: query[c].astype(object).tolist() for c in query.columns}}
