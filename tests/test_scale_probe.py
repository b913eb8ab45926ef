"""benchmarks/scale_stages.py's layout probe: its count of edge samples over all epochs is the optimiser's."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_the_probe_counts_the_edge_samples_the_optimiser_makes():
    import scale_stages

    from raregal.discovery.deterministic_umap import _epochs_per_sample

    w = np.random.default_rng(0).random(20_000).astype(np.float32) ** 3  # mostly weak edges, as fuzzy graphs
    eps = _epochs_per_sample(w, w.max(), 200, np.empty(len(w), np.float32))
    next_s, made, first_epochs = eps.copy(), 0, []
    for epoch in range(200):  # the optimiser's schedule: due when next_s <= epoch, then next_s += eps
        due = next_s <= epoch
        assert int(due.sum()) == scale_stages._due(next_s, epoch, chunk=4096)
        first_epochs.append(int(due.sum()))
        made += int(due.sum())
        next_s[due] += eps[due]
    assert abs(scale_stages._total_due(eps, 200, chunk=4096) - made) <= 1e-4 * made
    assert np.mean(first_epochs[1:5]) < 0.8 * made / 200  # why 200 x the first epochs was no estimate
