"""A parallel UMAP layout whose result does not depend on the number of threads (``layout="deterministic"``).

Why this hand-written optimiser exists: umap-learn's SGD (``umap.layouts.optimize_layout_euclidean``)
is reproducible or parallel, never both. With a seed it runs on one thread; with
``parallel=True`` its threads move shared coordinates without locks (Hogwild) and draw
negative samples from random states that depend on which thread got which edge, so the layout
changes from run to run and with ``NUMBA_NUM_THREADS``.

This module keeps umap-learn's graph, objective, schedule and defaults: the fuzzy graph of
``umap.umap_.fuzzy_simplicial_set``, ``a, b`` from ``find_ab_params``, the edge schedule of
``make_epochs_per_sample`` (weak edges pruned below ``max / n_epochs``), its spectral / PCA /
random / array init (``noisy_scale_coords``, rescaled to [0, 10]), the attractive and
negative-sample gradients with ``gamma = 1``, ``negative_sample_rate = 5``, clipping at 4 and
the learning rate ``alpha = 1 - epoch / n_epochs``. What differs is the order of updates:

* each vertex owns its out-edges (the graph's CSR rows) and moves only itself, sequentially
  through its own edges; every other coordinate it reads comes from a snapshot taken at the
  start of the epoch, so vertices are independent within an epoch and ``numba.prange`` may
  split them among any number of threads with the same result, bit for bit;
* umap-learn's ``move_other`` (an edge also pulls its tail) becomes a second pull of the head:
  the graph is symmetric, so the tail gets the same pull when it processes the reverse edge,
  which has the same weight and hence the same sampling epochs; each vertex thus gets two
  attractive updates per sampled edge, as in umap-learn;
* negative samples come from a counter-based generator (splitmix64 of seed, epoch, edge and
  sample number), not from a random state threaded through the loop.

Nothing is compiled with ``fastmath``, so no reduction is reordered. ``benchmarks/layout_quality.py``
compares the layouts with umap-learn's on the same graph (trustworthiness, planted recovery).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from raregal import workers
from raregal.discovery._prefetch import prefetch_row
from raregal.timing import Progress

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_EDGE = np.uint64(0xD6E8FEB86659FD93)


@numba.njit(inline="always", cache=True)
def _splitmix64(z):
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@numba.njit(inline="always", cache=True)
def _clip(v):
    return 4.0 if v > 4.0 else (-4.0 if v < -4.0 else v)


@numba.njit(inline="always", cache=True)
def _sq_dist(x, y):
    d2 = np.float32(0.0)
    for d in range(x.shape[0]):
        diff = x[d] - y[d]
        d2 += diff * diff
    return d2


@numba.njit(inline="always", cache=True)
def _step(cur, other, coeff, alpha):
    for d in range(cur.shape[0]):
        cur[d] += np.float32(_clip(coeff * (cur[d] - other[d])) * alpha)


@numba.njit(inline="always", cache=True)
def _attract(cur, other, a, b, alpha):
    d2 = _sq_dist(cur, other)
    if d2 > 0.0:
        _step(cur, other, -2.0 * a * b * d2 ** (b - 1.0) / (a * d2 ** b + 1.0), alpha)


@numba.njit(inline="always", cache=True)
def _repel(cur, other, a, b, gamma, alpha):
    d2 = _sq_dist(cur, other)
    if d2 > 0.0:
        _step(cur, other, 2.0 * gamma * b / ((0.001 + d2) * (a * d2 ** b + 1.0)), alpha)


#: Negative samples fetched at once. Above a few million galaxies the layout no longer fits the
#: caches and each sample's row is a trip to memory (~100 ns); one at a time, each waited for the
#: last one's update, since the row was read inside it.
_GATHER = 8


@numba.njit(inline="always", cache=True)
def _next_due(next_s, start, stop, n):
    """The first edge in ``start:stop`` sampled in epoch ``n`` (``stop`` if none)."""
    i = start
    while i < stop and next_s[i] > n:
        i += 1
    return i


@numba.njit(inline="always", cache=True)
def _negatives(i, n, eps_neg, next_neg_i, seed):
    """Edge ``i``'s negative samples in epoch ``n``: their count and the key their vertices are drawn from."""
    return int((n - next_neg_i) / eps_neg), _splitmix64(seed ^ (np.uint64(i) * _EDGE + np.uint64(n)))


@numba.njit(inline="always", cache=True)
def _negative(key, p, n_vertices):
    return int(_splitmix64(key + np.uint64(p) * _GOLDEN) % np.uint64(n_vertices))


@numba.njit(inline="always", cache=True)
def _prefetch_edge(snap, tail, eps, next_neg, i, n, neg_rate, seed):
    """Ask for the rows edge ``i`` will read in epoch ``n`` (its tail, its first negative samples)."""
    prefetch_row(snap, tail[i])
    n_neg, key = _negatives(i, n, eps[i] / neg_rate, next_neg[i], seed)
    for p in range(min(n_neg, _GATHER)):
        prefetch_row(snap, _negative(key, p, snap.shape[0]))


@numba.njit(parallel=True, cache=True)
def _epoch(emb, snap, indptr, tail, eps, neg_rate, next_s, next_neg, n, a, b, gamma, alpha, seed, prefetch=True):
    """One epoch: vertex ``j`` moves ``emb[j]`` along its edges, reading only ``snap`` for others.

    ``prefetch``: ask for the next due edge's rows (in this vertex or the next) while this edge's
    arithmetic runs. A hint only: the same bits either way (tested), in less time above the caches.
    """
    n_vertices, dim = emb.shape
    for j in numba.prange(n_vertices):
        cur = emb[j]
        ks = np.empty(_GATHER, np.int64)
        rows = np.empty((_GATHER, dim), np.float32)
        stop = indptr[j + 1]
        # the look-ahead reaches into the next vertex's edges: usually this thread's next vertex; where it
        # is another thread's, that thread may be updating their schedule, so the prefetch may miss (a
        # float32 is read whole on any CPU numba targets), but it never changes what is computed
        ahead = indptr[min(j + 2, n_vertices)]
        i = _next_due(next_s, indptr[j], stop, n)
        if prefetch and i < stop:
            _prefetch_edge(snap, tail, eps, next_neg, i, n, neg_rate, seed)
        while i < stop:
            following = _next_due(next_s, i + 1, ahead, n)
            if prefetch and following < ahead:
                _prefetch_edge(snap, tail, eps, next_neg, following, n, neg_rate, seed)
            other = snap[tail[i]]
            _attract(cur, other, a, b, alpha)  # this edge's pull on its head ...
            _attract(cur, other, a, b, alpha)  # ... and the reverse edge's (umap-learn's move_other)
            next_s[i] += eps[i]
            eps_neg = eps[i] / neg_rate  # as umap-learn's epochs_per_sample / negative_sample_rate, per edge
            n_neg, key = _negatives(i, n, eps_neg, next_neg[i], seed)
            for p0 in range(0, n_neg, _GATHER):
                m = min(_GATHER, n_neg - p0)
                for q in range(m):  # fetch the samples' rows first: independent loads, which overlap
                    ks[q] = _negative(key, p0 + q, n_vertices)
                    for d in range(dim):
                        rows[q, d] = snap[ks[q], d]
                for q in range(m):  # ... then move, in the same order and with the same values as before
                    if ks[q] != j:
                        _repel(cur, rows[q], a, b, gamma, alpha)
            next_neg[i] += n_neg * eps_neg
            i = following if following < stop else stop


def optimize_layout(init: np.ndarray, indptr: np.ndarray, tail: np.ndarray, epochs_per_sample: np.ndarray,
                    n_epochs: int, a: float, b: float, seed: int, gamma: float = 1.0,
                    initial_alpha: float = 1.0, negative_sample_rate: int = 5) -> np.ndarray:
    """Optimise the layout ``init`` (N, d) on a symmetric graph given as CSR (``indptr``, ``tail``).

    ``epochs_per_sample`` (one per edge, CSR order) is umap-learn's schedule (kept in float32). The result is the
    same whatever ``numba.get_num_threads()`` is. Returns a new (N, d) float32 array.
    """
    emb = np.array(init, dtype=np.float32, order="C", copy=True)
    snap = emb.copy()
    # the schedule in float32: 12 bytes an edge, not umap-learn's 24 (0.75 GiB less at 1M galaxies, 6.4 at 8.7M);
    # the sums are rounded to float32, so a sample moves by an epoch only where one lands within
    # float32 rounding (6e-8 relative) of a whole epoch
    eps = np.asarray(epochs_per_sample, dtype=np.float32)
    neg_rate = float(negative_sample_rate)
    next_s, next_neg = eps.copy(), eps / np.float32(neg_rate)
    indptr = np.asarray(indptr, np.int64)
    tail = np.asarray(tail)
    tail = tail if tail.dtype in (np.int32, np.int64) else tail.astype(np.int64)  # int32: 4 bytes an edge
    key = np.uint64(_mix_seed(seed))
    alpha = initial_alpha
    work = samples_by_epoch(eps, n_epochs)
    progress = Progress("edge samples", work[-1])
    for n in range(n_epochs):
        _epoch(emb, snap, indptr, tail, eps, neg_rate, next_s, next_neg, n, a, b, gamma, alpha, key)
        snap[:] = emb
        progress.update(work[n], f"epoch {n + 1} / {n_epochs}")
        alpha = initial_alpha * (1.0 - float(n) / float(n_epochs))  # umap-learn's decay, same off-by-one
    return emb


def samples_by_epoch(epochs_per_sample: np.ndarray, n_epochs: int, bins: int = 4096) -> np.ndarray:
    """(n_epochs,) float64: the edge samples the layout has made by the end of each epoch (0-based).

    Each epoch's time is about proportional to its edge samples (each with its negative samples),
    and the first epochs make few: an edge of ``epochs_per_sample`` e is first sampled in epoch
    ceil(e), and has been sampled floor(m / e) times by the end of epoch m. Summed over edges from
    a histogram of the sampling rates 1 / e in ``bins`` bins (one pass, no copy of the edges), so
    an estimate within the bins' width, for the progress lines; -1 (never sampled) counts nothing.
    """
    counts = _rate_histogram(np.asarray(epochs_per_sample), bins)
    rates = np.arange(bins + 1) / bins
    epochs = np.arange(n_epochs, dtype=np.float64)
    return (counts[None, :] * np.floor(epochs[:, None] * rates[None, :] + 1e-9)).sum(axis=1)


@numba.njit(cache=True)
def _rate_histogram(eps, bins):
    counts = np.zeros(bins + 1, np.float64)
    for i in range(len(eps)):
        if eps[i] > 0:
            counts[min(bins, int(bins / eps[i]))] += 1.0
    return counts


@numba.njit(cache=True)
def _epochs_per_sample(weights, w_max, n_epochs, out):
    """umap-learn's ``make_epochs_per_sample`` in one pass (its numpy form holds four float64 copies
    of the edges at once), with the same arithmetic: ``n_epochs * (w / w_max)`` in the weights'
    float32, then ``n_epochs / that`` in float64; -1 where it is 0. Written into ``out``: float64 is
    umap-learn's array, float32 the layout's (:func:`optimize_layout`), each value rounded once."""
    scale = weights.dtype.type(n_epochs)
    for i in range(len(weights)):
        ns = scale * (weights[i] / w_max)
        out[i] = np.float64(n_epochs) / np.float64(ns) if ns > 0 else -1.0
    return out


def _mix_seed(seed: int) -> int:
    z = (int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    return z ^ (z >> 31)


@dataclass
class LayoutProblem:
    """A graph ready to lay out, as umap-learn's ``simplicial_set_embedding`` prepares it.

    ``indptr``/``tail``: the pruned fuzzy graph in CSR order (edge ``i`` runs from the vertex whose
    row holds it to ``tail[i]``); ``epochs_per_sample`` per edge (float32); ``init`` (N, d) float32 scaled
    to [0, 10]; ``a``, ``b``; ``n_epochs``.
    """

    indptr: np.ndarray
    tail: np.ndarray
    epochs_per_sample: np.ndarray
    init: np.ndarray
    a: float
    b: float
    n_epochs: int

    @property
    def head(self) -> np.ndarray:
        """The head of each edge (for umap-learn's COO-style optimiser)."""
        return np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int32), np.diff(self.indptr))


def fuzzy_graph(X: np.ndarray, knn, n_neighbors: int, seed: int):
    """umap-learn's fuzzy simplicial set (scipy CSR, symmetric) on a precomputed k-NN graph.

    The same matrix as ``umap.umap_.fuzzy_simplicial_set``, built in a fraction of its memory
    (:mod:`raregal.discovery.fuzzy_union`); ``X`` and ``seed`` are not needed for a precomputed graph.
    """
    from raregal.discovery.fuzzy_union import fuzzy_union
    from raregal.numba_cache import cache_kernels

    cache_kernels()  # umap-learn's graph kernels, from numba's disk cache after the first process
    return fuzzy_union(knn[0], knn[1], n_neighbors)


def prepare_layout(X: np.ndarray, graph, n_components: int, *, init="spectral", n_epochs: int | None = None,
                   min_dist: float = 0.1, metric: str = "euclidean", seed: int = 0, copy: bool = True) -> LayoutProblem:
    """Prune the graph, schedule its edges and initialise, as ``umap.umap_.simplicial_set_embedding`` does.

    BLAS runs on one thread here (PCA, spectral init), so the start does not depend on the thread count.
    ``copy=False`` prunes a CSR ``graph`` in place (no second copy of its edges) when the caller is done with it.
    """
    from umap.umap_ import find_ab_params

    graph = graph.tocsr(copy=copy)  # pruned below: a caller's graph may also serve the other map
    graph.sum_duplicates()
    default_epochs = 500 if graph.shape[0] <= 10000 else 200
    n_epochs = default_epochs if n_epochs is None else n_epochs
    graph.data[graph.data < graph.data.max() / float(n_epochs if n_epochs > 10 else default_epochs)] = 0.0
    graph.eliminate_zeros()
    graph.sort_indices()
    random_state = np.random.RandomState(seed)
    with workers.single_blas_thread():
        emb = _initial_layout(X, graph, n_components, init, random_state, metric)
    emb = (10.0 * (emb - emb.min(0)) / (emb.max(0) - emb.min(0))).astype(np.float32, order="C")
    a, b = find_ab_params(1.0, min_dist)
    eps = _epochs_per_sample(graph.data, graph.data.max(), n_epochs, np.empty(len(graph.data), np.float32))
    return LayoutProblem(graph.indptr.astype(np.int64), graph.indices, eps, emb, float(a), float(b), int(n_epochs))


def _initial_layout(X, graph, n_components, init, random_state, metric) -> np.ndarray:
    """umap-learn's initialisations: ``spectral``, ``pca``, ``random`` or an (N, n_components) array."""
    from umap.umap_ import noisy_scale_coords

    if isinstance(init, str) and init == "random":
        return random_state.uniform(-10.0, 10.0, (graph.shape[0], n_components)).astype(np.float32)
    if isinstance(init, str) and init == "pca":
        from sklearn.decomposition import PCA

        emb = PCA(n_components=n_components, random_state=random_state).fit_transform(X).astype(np.float32)
        return noisy_scale_coords(emb, random_state, max_coord=10, noise=0.0001)
    if isinstance(init, str) and init == "spectral":
        from umap.spectral import spectral_layout

        emb = spectral_layout(X, graph, n_components, random_state, metric=metric)
        return noisy_scale_coords(emb, random_state, max_coord=10, noise=0.0001)
    if isinstance(init, str):
        raise ValueError(f"unknown init {init!r}; choose 'spectral', 'pca', 'random' or an array")
    emb = np.array(init, dtype=np.float32)
    if len(np.unique(emb, axis=0)) < len(emb):  # as umap-learn: jitter duplicate starting points
        from sklearn.neighbors import KDTree

        nndist = KDTree(emb).query(emb, k=2)[0][:, 1].mean()
        emb = emb + random_state.normal(scale=0.001 * nndist, size=emb.shape).astype(np.float32)
    return emb


def deterministic_embed(X: np.ndarray, n_components: int, n_neighbors: int, knn, *, init="spectral",
                        n_epochs: int | None = None, min_dist: float = 0.1, metric: str = "euclidean",
                        random_state: int = 0, graph=None) -> np.ndarray:
    """A UMAP embedding of ``X`` (N, D) on the k-NN graph ``knn``, bit-identical at any thread count.

    ``graph``: the fuzzy graph of ``knn`` (:func:`fuzzy_graph`) when already made (it depends on the
    k-NN graph only, not the seed), left as it was; or a callable that returns a fresh one (a
    :class:`SpilledGraph`). A fresh or own graph is pruned in place, so only the pruned edges'
    schedule is held while the layout optimises.
    """
    own = graph is None or callable(graph)
    graph = fuzzy_graph(X, knn, n_neighbors, random_state) if graph is None else graph() if own else graph
    problem = prepare_layout(X, graph, n_components, init=init, n_epochs=n_epochs, min_dist=min_dist,
                             metric=metric, seed=random_state, copy=not own)
    graph = None  # an own graph's weights are not needed while the layout optimises (4-8 bytes an edge)
    return optimize_layout(problem.init, problem.indptr, problem.tail, problem.epochs_per_sample,
                           problem.n_epochs, problem.a, problem.b, random_state)


class SpilledGraph:
    """The fuzzy graph of a k-NN graph for several maps, kept on disk between them, not in memory.

    Called, it returns a fresh copy (scipy CSR): built by :func:`fuzzy_graph` the first time and
    written to a temporary folder inside ``folder`` (the run's ``.stages``; None: the system's
    temporary folder) (8 bytes an edge: 0.5 GB at 1M galaxies, 4.6 GB at 8.7M), read back after.
    The 5-D layout can thus prune its copy in place and the graph is not held while it optimises;
    the 2-D map reads it back in a second instead of rebuilding it (about a minute at 1M).
    ``close()`` (or the end of a ``with`` block) removes the folder.
    """

    def __init__(self, knn, n_neighbors: int, seed: int = 0, folder=None):
        self.knn, self.n_neighbors, self.seed, self.folder = knn, n_neighbors, seed, folder
        self._dir = None

    def __call__(self):
        import scipy.sparse as sp

        if self._dir is None:
            return self._build()
        parts = [np.load(f"{self._dir.name}/{name}.npy") for name in ("data", "indices", "indptr")]
        return sp.csr_matrix(tuple(parts), shape=(len(parts[2]) - 1,) * 2)

    def spill(self, load_knn=None) -> None:
        """Build the graph and write it now, and let go of the k-NN graph (a caller may then free it).

        ``load_knn``: a function that returns the k-NN graph (indices, distances), e.g. from the
        run's stages, used instead of the one given, so that it is freed as soon as its memberships
        are made (:func:`~raregal.discovery.fuzzy_union.fuzzy_union_loaded`).
        """
        if load_knn is not None:
            self.knn = load_knn
        if self._dir is None:
            self._build()
        self.knn = None

    def _build(self):
        import os
        import socket
        import tempfile

        from raregal.discovery.fuzzy_union import fuzzy_union_loaded
        from raregal.numba_cache import cache_kernels

        if callable(self.knn):
            cache_kernels()
            graph = fuzzy_union_loaded(self.knn, self.n_neighbors)
        else:
            graph = fuzzy_graph(None, self.knn, self.n_neighbors, self.seed).tocsr()
        if self.folder is not None:
            os.makedirs(self.folder, exist_ok=True)
            remove_stale_spills(self.folder)
        self._dir = tempfile.TemporaryDirectory(prefix=f"{_SPILL}{socket.gethostname()}-{os.getpid()}-",
                                                dir=self.folder)
        for name in ("indptr", "indices", "data"):
            np.save(f"{self._dir.name}/{name}.npy", getattr(graph, name))
        return graph

    def close(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_SPILL = "raregal-fuzzy-graph-"


def remove_stale_spills(folder) -> list:
    """Remove the spilled graphs in ``folder`` that a killed search left (a SIGKILL skips ``close()``):
    those named for this machine and a process that no longer runs (4.6 GB each at 8.7M galaxies).
    Folders of running processes, of other machines and of other names are left alone. Returns the
    names removed."""
    import os
    import shutil
    import socket
    from pathlib import Path

    host, removed = socket.gethostname(), []
    for path in Path(folder).glob(f"{_SPILL}*"):
        owner = path.name[len(_SPILL):].rsplit("-", 2)  # host-pid-random; the host may hold "-"
        if len(owner) != 3 or owner[0] != host or not owner[1].isdigit() or not path.is_dir():
            continue
        if not _process_runs(int(owner[1])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def _process_runs(pid: int) -> bool:
    import os

    if os.name == "nt":  # os.kill there ends the process whatever the signal: never ask
        return True
    try:
        os.kill(pid, 0)  # signal 0: no signal sent, only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
