"""The pre-filter on predicted morphology: the paper's cuts, missing columns, and --keep-disturbed."""

import numpy as np
import pandas as pd
import pytest

from raregal.select import DISTURBED_FRACTIONS, paper_cuts, prefilter

S, E, A = ("smooth-or-featured_smooth_fraction", "disk-edge-on_yes_fraction",
           "smooth-or-featured_artifact_fraction")


def table(**cols):
    return pd.DataFrame({"id_str": [str(i) for i in range(len(next(iter(cols.values()))))], **cols})


def test_paper_cuts_in_order_with_nan_removing_nothing():
    frame = table(**{S: [0.9, 0.5, 0.1, 0.1, np.nan, 0.2], E: [0, 0, 0.3, 0.1, 0.1, np.nan],
                     A: [0, 0, 0, 0.35, 0.0, 0.0]})
    kept, counts = prefilter(frame, paper_cuts())
    assert kept.tolist() == [False, False, False, False, True, True]
    assert counts == {"input": 6, "after_smooth": 4, "after_edge_on": 3, "after_artifact": 2, "kept": 2}
    kept, counts = prefilter(frame, paper_cuts(keep_artifacts=True))
    assert kept.tolist() == [False, False, False, True, True, True] and "after_artifact" not in counts


def test_a_missing_column_skips_its_cut_with_a_warning(caplog):
    frame = table(**{S: [0.9, 0.1, 0.1], A: [0.0, 0.5, 0.0]})
    kept, counts = prefilter(frame, paper_cuts())
    assert kept.tolist() == [False, False, True]
    assert counts["skipped_edge_on"] == 1 and counts["after_edge_on"] == counts["after_smooth"] == 2
    assert "no column 'disk-edge-on_yes_fraction', so the edge_on cut is skipped" in caplog.text


def test_keep_disturbed_rescues_smooth_galaxies_with_tidal_features():
    minor, major, merger = DISTURBED_FRACTIONS
    frame = table(**{S: [0.9, 0.9, 0.9, 0.2], E: [0.0] * 4, A: [0.0] * 4,
                     minor: [0.1, 0.2, 0.0, 0.0], major: [0.1, 0.05, 0.0, 0.0], merger: [0.15, np.nan, 0.0, 0.5]})
    kept, counts = prefilter(frame, paper_cuts())  # the paper: every smooth galaxy goes
    assert kept.tolist() == [False, False, False, True]
    kept, counts = prefilter(frame, paper_cuts(keep_disturbed=0.3))
    assert kept.tolist() == [True, False, False, True]  # 0.35 >= 0.3; 0.25 (NaN as 0) is not
    assert counts["rescued_smooth"] == 1 and counts["after_smooth"] == 2


def test_keep_disturbed_without_merging_columns_rescues_nothing(caplog):
    frame = table(**{S: [0.9, 0.1], E: [0.0, 0.0], A: [0.0, 0.0]})
    kept, counts = prefilter(frame, paper_cuts(keep_disturbed=0.3))
    assert kept.tolist() == [False, True] and "rescued_smooth" not in counts
    assert "nothing is rescued from the smooth cut" in caplog.text


def test_keep_disturbed_is_a_checked_search_parameter():
    from raregal.config import config_from_dict
    from raregal.errors import InputError

    assert config_from_dict({"keep_disturbed": 0.3}).keep_disturbed == 0.3
    assert config_from_dict({"keep_disturbed": None, "umap_n_epochs": None}).keep_disturbed is None  # optional keys
    with pytest.raises(InputError, match="'keep_disturbed' must be a fraction"):
        config_from_dict({"keep_disturbed": 1.5})
