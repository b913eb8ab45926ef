"""A sample for the layout that keeps rare, tight groups whole: density-biased sampling.

A uniform sample of a fraction f keeps f S members of a class of S galaxies: at 10^8 galaxies
and a sample of 10^6, a class of 300 keeps 3, too few to be a cluster. So rows are drawn with
inclusion probability ``p_i = min(1, c * max(1, rho_i / median(rho)))`` (density-biased sampling,
Palmer & Faloutsos 2000, with a floor at the median density):

* ``rho_i`` is the k-NN density estimate ``d_k(i) ** -m``, ``d_k`` the distance to the k-th
  neighbour (the k-NN graph's last column) and ``m`` the intrinsic dimension, estimated from the
  same graph (Levina & Bickel 2005, averaged as MacKay & Ghahramani suggest);
* ``c`` is set so the expected sample size is the one asked for.

Galaxies at or below the median density are sampled uniformly at rate c; denser ones in
proportion to their density, up to all of them. The sampled density ``rho * p`` rises with
``rho``, so the density's level sets, and with them HDBSCAN's cluster tree, keep their shape,
while the tight groups HDBSCAN finds as leaves are kept (nearly) whole.
"""

from __future__ import annotations

import numpy as np

#: Smallest distance used in logarithms (duplicate rows are at distance 0).
_TINY = 1e-12


def log_distance_ratios(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a k-NN graph's ``distances`` (n, k), self first: ``log d_k`` and the mean ``log(d_k / d_j)``
    over its neighbours j < k (Levina & Bickel's inverse dimension estimate), both float64 (n,)."""
    T = np.maximum(np.asarray(distances[:, 1:], dtype=np.float64), _TINY)
    if T.shape[1] < 2:
        raise ValueError("a density estimate needs at least 2 neighbours besides the row itself")
    log_t = np.log(T)
    log_k = log_t[:, -1]
    return log_k, (log_k[:, None] - log_t[:, :-1]).mean(axis=1)


def intrinsic_dimension(inverse_estimates: np.ndarray) -> float:
    """The data's dimension from the rows' inverse estimates: 1 / their mean, clipped to [1, 128]."""
    mean = float(np.mean(inverse_estimates)) if len(inverse_estimates) else 0.0
    return float(np.clip(1.0 / mean, 1.0, 128.0)) if mean > 0 else 128.0


def inclusion_probabilities(log_dk: np.ndarray, dimension: float, size: int) -> np.ndarray:
    """(n,) float64 probabilities that sum to ``size`` (all 1 when ``size`` >= n), see the module."""
    n = len(log_dk)
    if size >= n:
        return np.ones(n)
    log_rho = -dimension * log_dk
    boost = np.exp(np.clip(log_rho - np.median(log_rho), 0.0, 700.0))  # >= 1; floor at the median density
    lo, hi = 0.0, 1.0  # expected size sum(min(1, c * boost)) rises with c, from 0 to n
    for _ in range(100):
        c = 0.5 * (lo + hi)
        if np.minimum(1.0, c * boost).sum() < size:
            lo = c
        else:
            hi = c
    return np.minimum(1.0, hi * boost)


def draw(probabilities: np.ndarray, random_state: int) -> np.ndarray:
    """(n,) bool: the seeded Bernoulli draw of each row (the same rows for the same seed and table)."""
    u = np.random.default_rng([int(random_state), 0x5A4D]).random(len(probabilities))
    return u < probabilities
