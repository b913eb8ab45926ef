"""The GPU switches route to cuML (replaced here by the CPU libraries, since tests have no GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from raregal.discovery.config import SearchConfig
from raregal.errors import InputError


def test_device_cuda_routes_umap_and_hdbscan_to_cuml(monkeypatch):
    import raregal.discovery.hdbscan_leaves as cluster
    import raregal.discovery.umap as reduce
    from raregal.discovery.estimator import RareClassSearch

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
    with pytest.raises(InputError, match="device='tpu': must be one of"):
        SearchConfig(device="tpu").validate()


def test_uint8_resize_matches_the_float_path_within_a_grey_level(tmp_path):
    import torch
    from astropy.io import fits
    from PIL import Image

    from raregal.images.dataset import ImageDataset, eval_transform

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    fits.PrimaryHDU(rng.normal(0, 1, (40, 40)).astype(np.float32)).writeto(tmp_path / "b.fits")
    files = [tmp_path / "a.png", tmp_path / "b.fits"]
    exact = ImageDataset(files, eval_transform(32))
    fast = ImageDataset(files, eval_transform(32), resize_uint8=True)
    for i in range(2):
        a, b = exact[i]["image"], fast[i]["image"]
        assert b.dtype == torch.float32 and b.shape == a.shape == (3, 32, 32)
        assert float((a - b).abs().max()) <= 1.0 / 255 + 1e-6 and 0 <= float(b.min()) and float(b.max()) <= 1
    assert torch.equal(exact[1]["image"], fast[1]["image"])  # FITS is always resized as float
