"""The GPU switches route to cuML (replaced here by the CPU libraries, since tests have no GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from raregal.config import SearchConfig
from raregal.errors import InputError


def test_device_cuda_routes_umap_and_hdbscan_to_cuml(monkeypatch):
    import raregal.cluster as cluster
    import raregal.reduce as reduce
    from raregal.search import RareClassSearch

    calls = []

    def fake_umap(X, n_components, n_neighbors, **kw):
        calls.append(("umap", n_components, kw["knn"] is not None))
        kw.pop("knn")
        return reduce.umap_embed(X, n_components, n_neighbors, **kw)

    def fake_hdbscan(Y, *args):
        calls.append(("hdbscan", Y.dtype))
        return cluster._fit_fast_hdbscan(Y, *args)

    monkeypatch.setattr(reduce, "_umap_cuml", fake_umap)
    monkeypatch.setattr(cluster, "_fit_cuml", fake_hdbscan)
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (150, 8)), rng.normal(6, 1, (150, 8))]).astype(np.float32)
    est = RareClassSearch(n_neighbors=10, min_samples=5, min_cluster_size=10, map_2d=True, device="cuda").fit(X)
    assert calls == [("umap", 5, True), ("umap", 2, True), ("hdbscan", np.float32)]
    assert est.embedding_.shape == (300, 5) and est.labels_.max() >= 1
    assert set(est.labels_[:150]) & set(est.labels_[150:]) <= {-1}  # the two blobs never share a cluster


def test_device_is_a_checked_config_key():
    assert SearchConfig(device="cuda").validate().device == "cuda"
    with pytest.raises(InputError, match="'device'"):
        SearchConfig(device="tpu").validate()
