"""layout="deterministic": thread-independent k-NN graphs, raregal.discovery.deterministic_umap's parallel optimiser, bit-identical at any thread count."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raregal.discovery import deterministic_umap as layout
from raregal.discovery import umap
from raregal.discovery import knn
from raregal.errors import InputError
from raregal.discovery.estimator import RareClassSearch

# above knn.EXACT_KNN_BELOW, where the default path switches to NN-descent (thread-dependent) and the
# deterministic one to raregal.discovery.knn
N_ROWS = 9000

_FIT = """
import json, sys
import numpy as np
from raregal.evaluation.planted import make_planted
from raregal.discovery.estimator import RareClassSearch
n, out, seeds, layout = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
X = make_planted(n=n, dim=16, seed=3).filter(like="feat_").to_numpy(np.float32)
arrays = {}
for seed in seeds:
    est = RareClassSearch(n_neighbors=15, min_samples=40, umap_n_epochs=40, map_2d_epochs=10,
                          random_state=seed, layout=layout).fit(X)
    arrays.update({f"{k}_{seed}": v for k, v in dict(knn_i=est.knn_[0], knn_d=est.knn_[1], emb=est.embedding_,
                                                     emb2=est.embedding_2d_, labels=est.labels_).items()})
np.savez(out, **arrays)
"""


def _fit_in_subprocess(tmp_path: Path, threads: int, seeds, n=N_ROWS, layout="deterministic") -> dict:
    out = tmp_path / f"fit_{threads}_{n}.npz"
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    subprocess.run([sys.executable, "-c", _FIT, str(n), str(out), json.dumps(seeds), layout], env=env, check=True,
                   timeout=300)
    with np.load(out) as data:
        return dict(data)


@pytest.mark.timeout(600)
def test_one_and_two_threads_give_the_same_bits(tmp_path):
    assert N_ROWS > knn.EXACT_KNN_BELOW
    one = _fit_in_subprocess(tmp_path, 1, [0, 1])
    two = _fit_in_subprocess(tmp_path, 2, [0])
    for key in ("knn_i_0", "knn_d_0", "emb_0", "emb2_0", "labels_0"):
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)
    assert one["labels_0"].max() >= 1  # clusters were found, so equal labels say something
    # another seed: another partition of the k-NN search (nearly the same graph) and another layout
    assert 0.95 < np.mean(one["knn_i_0"] == one["knn_i_1"]) < 1
    assert not np.array_equal(one["emb_0"], one["emb_1"])


@pytest.mark.timeout(300)
def test_auto_below_the_threshold_gives_the_same_bits_at_one_and_two_threads(tmp_path):
    # "auto" on 3,000 rows: the exact graph, umap-learn's one-thread optimiser, one-thread BLAS init
    one = _fit_in_subprocess(tmp_path, 1, [0], n=3000, layout="auto")
    two = _fit_in_subprocess(tmp_path, 2, [0], n=3000, layout="auto")
    for key in ("knn_i_0", "knn_d_0", "emb_0", "emb2_0", "labels_0"):
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)
    assert one["labels_0"].max() >= 1


def _blobs(n=300, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(0, 0.2, (n, d)), rng.normal(4, 0.2, (n, d))]).astype(np.float32)


def test_exact_knn_matches_brute_force_and_lists_self_first():
    from sklearn.neighbors import NearestNeighbors

    X = _blobs()
    X[5] = X[4]  # a duplicate: each copy still lists itself first
    idx, dist = knn.exact_knn(X, 10, block=128, tile=200)
    assert idx.dtype == np.int32 and dist.dtype == np.float32
    np.testing.assert_array_equal(idx[:, 0], np.arange(len(X)))
    ref_d, _ = NearestNeighbors(n_neighbors=10).fit(X).kneighbors(X)
    np.testing.assert_allclose(dist, ref_d, atol=1e-5)
    cos_i, cos_d = knn.exact_knn(X, 10, metric="cosine")
    ref_cd, _ = NearestNeighbors(n_neighbors=10, metric="cosine").fit(X).kneighbors(X)
    np.testing.assert_allclose(cos_d, ref_cd, atol=1e-5)
    with pytest.raises(ValueError, match="metric='manhattan': must be one of"):
        knn.exact_knn(X, 10, metric="manhattan")


def test_deterministic_layout_repeats_and_separates_blobs():
    X = _blobs()
    graph = knn.exact_knn(X, 10)
    a = umap.umap_embed(X, 2, 10, knn=graph, n_epochs=60, random_state=1, backend="deterministic")
    b = umap.umap_embed(X, 2, 10, knn=graph, n_epochs=60, random_state=1, backend="deterministic")
    c = umap.umap_embed(X, 2, 10, knn=graph, n_epochs=60, random_state=2, backend="deterministic")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    y = np.repeat([0, 1], 300)
    gap = np.linalg.norm(a[y == 0].mean(0) - a[y == 1].mean(0))
    assert gap > 3 * max(a[y == 0].std(0).max(), a[y == 1].std(0).max())


def test_layout_choice_is_validated():
    X = _blobs()
    with pytest.raises(Exception, match="layout"):
        RareClassSearch(layout="fast", min_samples=20).fit(X)
    with pytest.raises(InputError, match="metric='manhattan'"):
        RareClassSearch(layout="deterministic", metric="manhattan", min_samples=20).fit(X)
    with pytest.raises(InputError, match="choose one"):
        RareClassSearch(layout="deterministic", device="cuda").backends()


def test_config_and_cli_carry_the_layout():
    from raregal.cli.search import _FLAGS
    from raregal.discovery.config import SearchConfig, config_from_dict

    from raregal.discovery.pipeline import _config

    assert SearchConfig().layout == "auto" and _config(None, {}).to_dict()["layout"] == "auto"
    assert _config(None, {"layout": "umap-learn"}).layout == "umap-learn"
    assert RareClassSearch(n_neighbors=5, min_samples=3, map_2d=False).fit(_blobs()).refit_layout(
        _blobs(), 1).layout_ == "umap-learn"
    config = config_from_dict({"layout": "deterministic"})
    assert config.estimator_params()["layout"] == "deterministic" and config.to_dict()["layout"] == "deterministic"
    with pytest.raises(InputError, match="layout"):
        config_from_dict({"layout": "hogwild"})
    assert any(flag == "--layout" for flag, *_ in _FLAGS)


def test_a_run_folder_config_from_before_auto_repeats_umap_learn(tmp_path):
    from raregal.atomic import write_toml
    from raregal.discovery.config import SearchConfig, load_config

    old = SearchConfig().to_dict()
    del old["layout"]  # what raregal wrote before layout="auto": every key but the default layout
    write_toml(tmp_path / "config.toml", old)
    assert load_config(tmp_path / "config.toml").layout == "umap-learn"
    (tmp_path / "mine.toml").write_text("min_samples = 50\n")  # a user's own short config: the default
    assert load_config(tmp_path / "mine.toml").layout == "auto"


def test_a_spilled_graph_reads_back_the_same_graph_and_cleans_up():
    from pathlib import Path

    from raregal.discovery.deterministic_umap import SpilledGraph, fuzzy_graph
    from raregal.discovery.knn import exact_knn

    X = np.random.default_rng(0).standard_normal((600, 6)).astype(np.float32)
    knn = exact_knn(X, 15)
    with SpilledGraph(knn, 15) as spill:
        first, again = spill(), spill()
        folder = Path(spill._dir.name)
        assert sorted(p.name for p in folder.iterdir()) == ["data.npy", "indices.npy", "indptr.npy"]
    assert not folder.exists()
    ref = fuzzy_graph(X, knn, 15, 0)
    for g in (first, again):
        assert (g != ref).nnz == 0 and g.dtype == ref.dtype


def test_a_killed_search_s_spilled_graph_is_removed_by_the_next_and_nothing_else(tmp_path):
    """SIGKILL skips close(): the next spill in the folder removes a dead process's graph (GBs at scale),
    never a running process's, another machine's, or a folder of another name."""
    import os
    import socket
    import subprocess
    import sys

    from raregal.discovery.deterministic_umap import SpilledGraph, remove_stale_spills
    from raregal.discovery.knn import exact_knn

    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f"raregal-fuzzy-graph-{host}-{dead}-abc123"
    alive = tmp_path / f"raregal-fuzzy-graph-{host}-{os.getpid()}-def456"
    elsewhere = tmp_path / f"raregal-fuzzy-graph-some-other-node-{dead}-ghi789"
    mine = tmp_path / "my-notes"
    for d in (stale, alive, elsewhere, mine):
        d.mkdir()
        (d / "data.npy").write_bytes(b"x")
    X = np.random.default_rng(0).standard_normal((300, 6)).astype(np.float32)
    with SpilledGraph(exact_knn(X, 10), 10, folder=tmp_path) as spill:
        spill.spill()
        assert spill._dir.name.startswith(str(tmp_path / f"raregal-fuzzy-graph-{host}-{os.getpid()}-"))
        assert not stale.exists()
        assert alive.exists() and elsewhere.exists() and (mine / "data.npy").exists()
    assert remove_stale_spills(tmp_path) == [] and alive.exists()


def test_fetching_negative_samples_together_moves_the_layout_as_one_at_a_time():
    """_epoch fetches up to _GATHER negative-sample rows before moving (memory-level parallelism at
    millions of rows); the result must be the per-sample loop's, bit for bit, also past one batch."""
    import numba

    import raregal.discovery.deterministic_umap as du

    @numba.njit
    def one_at_a_time(emb, snap, indptr, tail, eps, neg_rate, next_s, next_neg, n, a, b, gamma, alpha, seed):
        for j in range(emb.shape[0]):
            cur = emb[j]
            for i in range(indptr[j], indptr[j + 1]):
                if next_s[i] > n:
                    continue
                du._attract(cur, snap[tail[i]], a, b, alpha)
                du._attract(cur, snap[tail[i]], a, b, alpha)
                next_s[i] += eps[i]
                eps_neg = eps[i] / neg_rate
                n_neg = int((n - next_neg[i]) / eps_neg)
                key = du._splitmix64(seed ^ (np.uint64(i) * du._EDGE + np.uint64(n)))
                for p in range(n_neg):
                    k = int(du._splitmix64(key + np.uint64(p) * du._GOLDEN) % np.uint64(emb.shape[0]))
                    if k != j:
                        du._repel(cur, snap[k], a, b, gamma, alpha)
                next_neg[i] += n_neg * eps_neg

    rng = np.random.default_rng(3)
    n = 400
    degrees = rng.integers(0, 12, n)  # some vertices have no edges: the look-ahead crosses to the next
    indptr = np.concatenate([[0], np.cumsum(degrees)]).astype(np.int64)
    tail = rng.integers(0, n, indptr[-1]).astype(np.int32)
    eps = (1.0 + 3.0 * rng.random(indptr[-1])).astype(np.float32)
    start = (10 * rng.random((n, 5))).astype(np.float32)
    kernels = {"prefetch": lambda *args: du._epoch(*args, True), "none": lambda *args: du._epoch(*args, False),
               "reference": one_at_a_time}
    runs = {}
    for name, kernel in kernels.items():
        emb = start.copy()
        next_s, next_neg = eps.copy(), eps / np.float32(23.0)
        for epoch in range(4):  # 23 negative samples an edge: three batches, the last one short
            snap = emb.copy()
            kernel(emb, snap, indptr, tail, eps, 23.0, next_s, next_neg, epoch, 1.58, 0.9, 1.0, 1.0, np.uint64(7))
        runs[name] = emb
    assert not np.array_equal(runs["reference"], start)  # it moved
    assert np.array_equal(runs["prefetch"], runs["reference"])  # the look-ahead's prefetches are hints only
    assert np.array_equal(runs["none"], runs["reference"])


def test_a_prefetch_of_a_row_changes_nothing_and_takes_any_integer_row():
    import numba

    from raregal.discovery._prefetch import prefetch_row

    @numba.njit
    def touch(array, rows):
        total = 0.0
        for r in rows:
            prefetch_row(array, r)
            total += array[r, array.shape[1] - 1]
        return total

    array = np.arange(35, dtype=np.float32).reshape(7, 5)
    before = array.copy()
    for rows in (np.array([6, 0, 3], np.int32), np.array([6, 0, 3], np.int64)):
        assert touch(array, rows) == 34.0 + 4.0 + 19.0
    assert touch(array.astype(np.float64), np.array([1], np.int64)) == 9.0
    assert np.array_equal(array, before)


def test_the_edge_samples_by_epoch_follow_the_optimiser_s_schedule():
    """The progress of a layout is counted in edge samples (an epoch's time follows them, and the
    first epochs make few); samples_by_epoch must be the schedule's count within its bins' width."""
    w = np.random.default_rng(0).random(50_000).astype(np.float32) ** 3  # mostly weak edges, as fuzzy graphs
    w[:100] = 0.0  # pruned edges (-1) are never sampled
    eps = layout._epochs_per_sample(w, w.max(), 200, np.empty(len(w), np.float32))
    next_s, made = eps.copy(), []
    for epoch in range(200):  # the optimiser's schedule: due when next_s <= epoch, then next_s += eps
        due = (next_s <= epoch) & (eps > 0)
        made.append(int(due.sum()))
        next_s[due] += eps[due]
    curve = layout.samples_by_epoch(eps, 200)
    assert curve.shape == (200,) and np.all(np.diff(curve) >= 0)
    assert abs(curve[-1] - sum(made)) <= 0.002 * sum(made)
    assert np.allclose(curve[[9, 49, 99]], np.cumsum(made)[[9, 49, 99]], rtol=0.01)
    assert curve[9] < 0.8 * 0.05 * curve[-1]  # the first 5 % of the epochs make under 4 % of the samples


def test_a_long_layout_says_how_far_it_is_and_the_same_bits_come_out(monkeypatch):
    import raregal.timing

    rng = np.random.default_rng(1)
    n, k = 300, 8
    tail = rng.integers(0, n, n * k).astype(np.int32)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    eps = (1.0 + 9.0 * rng.random(n * k)).astype(np.float32)
    init = (10 * rng.random((n, 5))).astype(np.float32)
    quiet = layout.optimize_layout(init, indptr, tail, eps, 30, 1.58, 0.9, seed=2)
    lines = []
    monkeypatch.setattr(raregal.timing, "PROGRESS_EVERY", 0.0)  # a line after every epoch
    monkeypatch.setattr(raregal.timing.log, "info", lines.append)
    told = layout.optimize_layout(init, indptr, tail, eps, 30, 1.58, 0.9, seed=2)
    assert np.array_equal(quiet, told)
    assert len(lines) == 30 and lines[-1].startswith("100.0 % of") and "(epoch 30 / 30)" in lines[-1]
    shares = [float(line.split("%")[0]) for line in lines]
    assert shares == sorted(shares) and shares[0] == 0.0  # nothing is due in the first epoch (every eps >= 1)
