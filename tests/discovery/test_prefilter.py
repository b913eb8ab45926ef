"""The pre-filter on predicted morphology: the paper's cuts, missing columns, and --keep-disturbed."""

import numpy as np
import pandas as pd
import pytest

from raregal.discovery.prefilter import DISTURBED_FRACTIONS, paper_cuts, prefilter

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
    from raregal.discovery.config import config_from_dict
    from raregal.errors import InputError

    assert config_from_dict({"keep_disturbed": 0.3}).keep_disturbed == 0.3
    assert config_from_dict({"keep_disturbed": None, "umap_n_epochs": None}).keep_disturbed is None  # optional keys
    with pytest.raises(InputError, match="keep_disturbed=1.5: must be a fraction in"):
        config_from_dict({"keep_disturbed": 1.5})


def campaign_table(campaign, smooth, edge_on, artifact):
    return {f"smooth-or-featured-{campaign}_smooth_fraction": smooth, f"disk-edge-on-{campaign}_yes_fraction": edge_on,
            f"smooth-or-featured-{campaign}_artifact_fraction": artifact}


def test_the_prefilter_reads_the_campaign_named_default_the_newest_in_the_table():
    from raregal.discovery.prefilter import campaign_columns

    frame = table(**campaign_table("dr5", [0.9, 0.1, 0.1], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
                  **campaign_table("dr8", [0.1, 0.9, 0.1], [0.0, 0.0, 0.5], [0.0, 0.0, 0.0]))
    kept, counts = prefilter(frame, paper_cuts(columns=campaign_columns(frame.columns)))  # dr8, the newest
    assert kept.tolist() == [True, False, False] and counts["after_smooth"] == 2 and counts["after_edge_on"] == 1
    kept, _ = prefilter(frame, paper_cuts(columns=campaign_columns(frame.columns, "dr5")))
    assert kept.tolist() == [False, True, True]
    assert campaign_columns(frame.columns, "dr8")["disturbed"] == (
        "merging-dr8_minor-disturbance_fraction", "merging-dr8_major-disturbance_fraction", "merging-dr8_merger_fraction")
    assert campaign_columns(["smooth-or-featured-dr12_smooth_fraction"])["disturbed"][0] == "merging-dr12_tidal-debris_fraction"


def test_gz_desi_columns_keep_todays_cuts_and_a_missing_campaign_names_the_tables():
    from raregal.errors import InputError
    from raregal.discovery.prefilter import campaign_columns

    assert [c.column for c in paper_cuts(columns=campaign_columns([S, E, A]))] == [S, E, A]
    assert [c.column for c in paper_cuts(columns=campaign_columns(["id_str"]))] == [S, E, A]
    dr8 = list(campaign_table("dr8", 0, 0, 0)) + list(campaign_table("dr12", 0, 0, 0))
    for bad in ("dr5", "dr9"):
        with pytest.raises(InputError, match=f"campaign='{bad}'.*the campaigns it has: dr12, dr8") as err:
            campaign_columns(dr8, bad)
        assert err.value.param == "campaign"
    with pytest.raises(InputError, match="the campaigns it has: none"):
        campaign_columns([S, E, A], "dr8")


def test_campaign_is_a_search_config_key_recorded_only_when_set():
    from raregal.discovery.config import SearchConfig, config_from_dict

    assert "campaign" not in SearchConfig().to_dict()
    assert config_from_dict({"campaign": "dr8"}).to_dict()["campaign"] == "dr8"


def test_search_cli_names_the_campaign_flag_and_the_tables_campaigns(tmp_path, capsys):
    from raregal.cli import main

    reps = tmp_path / "reps.parquet"
    pd.DataFrame({"id_str": [str(i) for i in range(30)], "feat_0": np.arange(30.0), "feat_1": np.arange(30.0)[::-1],
                  "smooth-or-featured-dr8_smooth_fraction": 0.1}).to_parquet(reps)
    assert main(["search", str(reps), "--out", str(tmp_path / "run"), "--campaign", "dr5"]) == 2
    err = capsys.readouterr().err
    assert "--campaign 'dr5'" in err and "the campaigns it has: dr8" in err and not (tmp_path / "run").exists()
