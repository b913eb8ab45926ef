"""RareClassSearch behaves as scikit-learn users expect: parameters checked in fit, input validated."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator

from sklearn.metrics import adjusted_rand_score

from raregal.discovery.hdbscan_leaves import leaf_clusters
from raregal.errors import InputError
from raregal.discovery.knn import EXACT_KNN_BELOW, knn_graph
from raregal.discovery.estimator import RareClassSearch

SMALL = dict(n_neighbors=5, n_components=2, min_samples=3, min_cluster_size=10, map_2d=False, umap_n_epochs=20)


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0, 1, (120, 6)), rng.normal(8, 1, (60, 6))]).astype(np.float32)


def test_passes_scikit_learns_estimator_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(RareClassSearch(**SMALL), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert len(results) > 40 and failed == []


@pytest.mark.parametrize("param, value", [("device", "tpu"), ("umap_init", "bogus"), ("n_neighbors", 1),
                                          ("min_cluster_size", 1.5), ("metric", "hamming"), ("map_2d", "yes"),
                                          ("random_state", "seven")])
def test_parameters_are_checked_in_fit(X, param, value):
    est = RareClassSearch(**SMALL).set_params(**{param: value})  # set_params does not check, fit does
    with pytest.raises(ValueError, match=f"^{param}={value!r}: must be "):
        est.fit(X)


def test_input_is_validated_and_features_counted(X):
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        RareClassSearch(**SMALL).fit(bad)
    with pytest.raises(ValueError, match="2D array"):
        RareClassSearch(**SMALL).fit(X[:, 0])
    est = RareClassSearch(**SMALL).fit(X.astype(np.float64).tolist())
    assert est.n_features_in_ == 6 and est.labels_.shape == (180,) and est.embedding_.dtype == np.float32


def test_random_state_takes_what_check_random_state_takes(X):
    a = RareClassSearch(**SMALL, random_state=np.random.RandomState(3)).fit(X)
    b = RareClassSearch(**SMALL, random_state=np.random.RandomState(3)).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert RareClassSearch(**SMALL, random_state=None).fit(X).labels_.shape == (180,)


def test_gpu_and_a_cpu_hdbscan_backend_conflict_instead_of_a_silent_override(X):
    with pytest.raises(InputError, match="device='cuda' runs HDBSCAN on cuML; hdbscan_backend='hdbscan'"):
        RareClassSearch(**SMALL, device="cuda", hdbscan_backend="hdbscan").fit(X)
    assert RareClassSearch(device="cuda").backends() == ("cuml", "cuml")
    assert RareClassSearch(hdbscan_backend="hdbscan").backends() == ("deterministic", "hdbscan")


def test_auto_layout_is_deterministic_where_it_can_be():
    assert RareClassSearch().resolved_layout() == "deterministic"
    # below the exact-graph threshold umap-learn's one-thread optimiser is already thread-independent
    assert RareClassSearch().resolved_layout(EXACT_KNN_BELOW - 1) == "umap-learn"
    assert RareClassSearch().resolved_layout(EXACT_KNN_BELOW) == "deterministic"
    assert RareClassSearch(layout="deterministic").resolved_layout(100) == "deterministic"
    assert RareClassSearch(metric="cosine").resolved_layout() == "deterministic"
    assert RareClassSearch(metric="manhattan").backends()[0] == "umap-learn"  # no thread-independent graph for it
    assert RareClassSearch(device="cuda").resolved_layout() == "umap-learn"  # cuML's, in fact
    assert RareClassSearch(layout="umap-learn").backends()[0] == "umap-learn"
    with pytest.raises(InputError, match="computes its own k-NN graph"):
        RareClassSearch(layout="deterministic", metric="manhattan").backends()


def test_refit_layout_is_a_clone_with_another_seed(X):
    est = RareClassSearch(**SMALL, random_state=1).fit(X)
    rep = est.refit_layout(X, 2)
    assert rep is not est and rep.get_params() == clone(est).set_params(random_state=2).get_params()
    assert rep.knn_ is est.knn_ and rep.labels_.shape == est.labels_.shape


def test_cosine_metric_groups_by_direction_not_length():
    # two rays from the origin, lengths 1..20: by angle two groups, by length mixed
    rng = np.random.default_rng(1)
    scale = rng.uniform(1, 20, (120, 1))
    dirs = np.repeat(np.eye(6)[[0, 1]], 60, axis=0) + rng.normal(0, 0.02, (120, 6))
    X, ray = (scale * dirs).astype(np.float32), np.repeat([0, 1], 60)
    est = RareClassSearch(**{**SMALL, "min_cluster_size": 20}, metric="cosine", random_state=0).fit(X)
    np.testing.assert_array_equal(est.knn_[0], knn_graph(X, SMALL["n_neighbors"], "cosine", 0)[0])
    assert (ray[est.knn_[0]] == ray[:, None]).all()  # every neighbour lies on the same ray
    kept = est.labels_ >= 0
    assert kept.mean() > 0.8 and adjusted_rand_score(ray[kept], est.labels_[kept]) == 1.0


def test_eom_selection_reaches_hdbscan(X):
    est = RareClassSearch(**SMALL, cluster_selection_method="eom", random_state=0).fit(X)
    args = (est.embedding_, SMALL["min_samples"], SMALL["min_cluster_size"], est.backends()[1])
    direct, leaf = leaf_clusters(*args, "eom"), leaf_clusters(*args, "leaf")
    np.testing.assert_array_equal(est.labels_, direct.labels)
    assert est.n_clusters_ == direct.n_clusters <= leaf.n_clusters
