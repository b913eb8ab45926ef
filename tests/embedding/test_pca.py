"""The PCA analysis: components needed for 90/95/99% of the variance, the curve, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from raregal.errors import InputError
from raregal.embedding.pca import explained_variance, pca_report


def low_rank(n=400, dim=40, seed=0):
    """Rows on a 6-d subspace with variances 32, 16, 8, 4, 2, 1 plus faint isotropic noise."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(dim, 6)))
    scores = rng.normal(size=(n, 6)) * np.sqrt([32, 16, 8, 4, 2, 1])
    return scores @ basis.T + rng.normal(0, 1e-3, size=(n, dim))


def test_components_needed_match_an_independent_svd():
    X = low_rank()
    result = explained_variance(X)
    centred = X - X.mean(0)
    s = np.linalg.svd(centred, compute_uv=False) ** 2
    cumulative = np.cumsum(s / s.sum())
    np.testing.assert_allclose(result["cumulative"], cumulative[: len(result["cumulative"])], rtol=1e-9)
    for t in ("0.90", "0.95", "0.99"):
        assert result["components_for"][t] == int(np.argmax(cumulative >= float(t)) + 1)
    assert result["components_for"]["0.99"] <= 6 and result["dim"] == 40
    assert result["components_for"]["0.90"] < result["components_for"]["0.99"]


def test_nonfinite_rows_are_dropped_and_subsets_are_seeded():
    X = low_rank()
    X[3, 0] = np.nan
    result = explained_variance(X, max_rows=100, seed=1)
    assert result["n_dropped_nonfinite"] == 1 and result["n_rows"] == 100
    assert explained_variance(X, max_rows=100, seed=1)["cumulative"] == result["cumulative"]
    with pytest.raises(InputError):
        explained_variance(np.ones((1, 3)))


def test_pca_cli_writes_json_and_png(tmp_path, capsys):
    from raregal.cli import main

    X = low_rank(n=200, dim=20).astype(np.float32)
    frame = pd.DataFrame(X, columns=[f"feat_{i}" for i in range(20)])
    frame.insert(0, "id_str", [f"g{i}" for i in range(len(X))])
    frame.to_parquet(tmp_path / "reps.parquet")
    assert main(["pca", str(tmp_path / "reps.parquet"), "--out", str(tmp_path / "pca")]) == 0
    assert "components needed" in capsys.readouterr().out
    result = json.loads((tmp_path / "pca" / "pca.json").read_text())
    assert result["components_for"] == explained_variance(X)["components_for"]
    with Image.open(tmp_path / "pca" / "explained_variance.png") as im:
        assert im.size[0] > 300 and im.size[1] > 200
    assert pca_report(tmp_path / "reps.parquet", tmp_path / "again")["n_rows"] == 200
