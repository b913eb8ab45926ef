"""What `raregal search` writes for a fixed table and seed stays what it was (tests/data/pinned_search.json).

The file was written by ``tests/pin_search.py --write`` before the search's code was reorganised;
a refactoring must leave every value the same. Coordinates and probabilities are compared to the
rounding they were stored with; labels, counts and clusters exactly.
"""

import json

import numpy as np
import pytest

from pin_search import PINNED, pinned_values


@pytest.fixture(scope="module")
def now():
    return pinned_values()


@pytest.fixture(scope="module")
def then():
    return json.loads(PINNED.read_text())


def test_labels_counts_clusters_and_parameters_are_unchanged(now, then):
    for key in ("columns", "labels", "kept", "counts", "clusters", "metrics", "tree_rows", "merges", "parameters"):
        assert now[key] == then[key], key


def test_coordinates_and_probabilities_are_unchanged(now, then):
    for key, atol in (("probability", 2e-4), ("umap5", 2e-3), ("umap2", 2e-3)):
        np.testing.assert_allclose(np.asarray(now[key]), np.asarray(then[key]), atol=atol, err_msg=key)
