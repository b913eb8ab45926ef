"""The density-biased sample: dimension estimate, probabilities, seeded draw."""

import numpy as np
import pytest

from raregal.discovery.knn import exact_knn
from raregal.discovery.on_dask import density


@pytest.mark.parametrize("dim", [3, 8])
def test_intrinsic_dimension_of_a_flat_gaussian_in_more_dimensions(dim):
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((6000, dim))
    X = (latent @ np.linalg.qr(rng.standard_normal((32, dim)))[0].T).astype(np.float32)  # dim-D inside 32-D
    _, d = exact_knn(X, 20)
    _, inverse = density.log_distance_ratios(d)
    assert density.intrinsic_dimension(inverse) == pytest.approx(dim, rel=0.2)


def test_probabilities_sum_to_the_size_asked_and_favour_dense_rows():
    rng = np.random.default_rng(1)
    log_dk = np.concatenate([rng.normal(0.0, 0.1, 9000), rng.normal(-1.0, 0.05, 300)])  # a tight group
    p = density.inclusion_probabilities(log_dk, dimension=8.0, size=2000)
    assert p.sum() == pytest.approx(2000, rel=1e-6)
    assert (p[9000:] == 1).all()  # the tight group is kept whole
    assert p.min() == pytest.approx(np.quantile(p, 0.4))  # at or below the median density: one uniform rate
    order = np.argsort(log_dk)
    assert (np.diff(p[order]) <= 1e-12).all()  # denser (smaller d_k) never less likely
    assert (density.inclusion_probabilities(log_dk, 8.0, size=len(log_dk)) == 1).all()


def test_the_draw_is_seeded():
    p = np.full(5000, 0.3)
    a, b, c = density.draw(p, 7), density.draw(p, 7), density.draw(p, 8)
    assert (a == b).all() and (a != c).any()
    assert abs(a.mean() - 0.3) < 0.03
