"""Bad input to `raregal search` fails early, names the problem, and writes nothing."""

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from raregal.inputs.tables import feature_matrix, read_table
from raregal.cli import main
from raregal.discovery.config import load_config
from raregal.errors import InputError
from raregal.evaluation.planted import make_planted
from raregal.discovery.pipeline import run_search

SMALL = dict(n_neighbors=10, min_samples=5, min_cluster_size=10, report=False, map_2d=False)


@pytest.fixture
def frame():
    return make_planted(n=300, dim=8, group_fractions=(0.05,), seed=0)


def fails(tmp_path, frame_or_path, match, **params):
    path = frame_or_path
    if isinstance(frame_or_path, pd.DataFrame):
        path = tmp_path / "reps.parquet"
        frame_or_path.to_parquet(path)
    out = tmp_path / "run"
    with pytest.raises(InputError, match=match):
        run_search(path, out, **{**SMALL, **params})
    assert not out.exists(), "nothing may be written when the input is bad"


def test_missing_id_column(tmp_path, frame):
    fails(tmp_path, frame.drop(columns="id_str"), "missing column 'id_str'")


def test_missing_features(tmp_path, frame):
    fails(tmp_path, frame.drop(columns=[c for c in frame if c.startswith("feat_")]), "no representation found")


def test_gap_in_feature_columns(tmp_path, frame):
    fails(tmp_path, frame.drop(columns="feat_3"), r"missing \[3\]")


def test_duplicate_ids(tmp_path, frame):
    frame.loc[5, "id_str"] = frame.loc[4, "id_str"]
    fails(tmp_path, frame, f"duplicate 'id_str' values, e.g. {frame.loc[4, 'id_str']}")


def test_non_numeric_features(tmp_path, frame):
    frame["feat_2"] = "spiral"
    fails(tmp_path, frame, "non-numeric feature columns: feat_2")


def test_rows_of_wrong_length(tmp_path, frame):
    vectors = list(frame.filter(like="feat_").to_numpy())
    vectors[7] = vectors[7][:5]
    table = pd.DataFrame({"id_str": frame["id_str"], "rep": vectors})
    fails(tmp_path, table, f"1 rows do not have length 8, e.g. ids \\['{frame['id_str'][7]}'\\]", features="rep")


def test_nan_and_inf_name_the_ids_or_are_dropped(tmp_path, frame):
    frame.loc[[3, 9], "feat_0"] = [np.nan, np.inf]
    bad = frame.loc[[3, 9], "id_str"].tolist()
    fails(tmp_path, frame, f"2 rows have NaN or infinite features, e.g. ids {bad[0]}, {bad[1]}")
    summary = run_search(tmp_path / "reps.parquet", tmp_path / "dropped", drop_invalid=True, **SMALL)
    assert summary["counts"]["valid"] == 298
    table = pd.read_parquet(tmp_path / "dropped" / "clusters.parquet")
    assert len(table) == 300 and not table.set_index("id_str").loc[bad, "kept"].any()


def test_too_few_rows_for_min_samples_suggests_a_value(tmp_path, frame):
    fails(tmp_path, frame, r"fewer than min_samples=300; small samples need a smaller value, e.g. min_samples=\d+",
          min_samples=300)


def test_unreadable_and_missing_files(tmp_path):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"this is not parquet")
    fails(tmp_path, junk, "junk.parquet: cannot read as parquet")
    fails(tmp_path, tmp_path / "absent.parquet", "absent.parquet: no such file")
    (tmp_path / "reps.xlsx").write_bytes(b"PK")
    fails(tmp_path, tmp_path / "reps.xlsx", "unknown table format")


def test_unknown_and_mistyped_config_keys(tmp_path, frame):
    cfg = tmp_path / "c.toml"
    cfg.write_text("min_samples = 5\nmin_sample = 4\n")
    with pytest.raises(InputError, match="unknown key\\(s\\) 'min_sample'"):
        load_config(cfg)
    cfg.write_text("min_samples = 'five'\n")
    with pytest.raises(InputError, match="c.toml: min_samples = 'five': must be a positive integer"):
        load_config(cfg)
    fails(tmp_path, frame, "smooth_cut=3.0: must be a fraction in \\[0, 1\\]", smooth_cut=3.0)


def test_cli_reports_errors_in_one_line(tmp_path, capsys, frame):
    frame.drop(columns="id_str").to_parquet(tmp_path / "r.parquet")
    assert main(["search", str(tmp_path / "r.parquet"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "raregal search: error:" in err and "id_str" in err and "Traceback" not in err


def test_every_table_format_reads_the_same_representation(tmp_path, frame):
    X = frame.filter(like="feat_").to_numpy(np.float32)
    frame.to_csv(tmp_path / "r.csv", index=False)
    ids = np.array(frame["id_str"].tolist())  # fixed-width unicode, as FITS stores strings
    Table({c: ids if c == "id_str" else frame[c].to_numpy() for c in frame if c != "true_class"}).write(tmp_path / "r.fits")
    t = Table({"id_str": ids, "rep": X})
    t.write(tmp_path / "v.fits")
    np.save(tmp_path / "r.npy", X)
    np.savez(tmp_path / "r.npz", features=X, id_str=ids)
    frame.to_parquet(tmp_path / "parts.parquet", partition_cols=None)
    for name, features in [("r.csv", None), ("r.fits", None), ("v.fits", "rep"), ("r.npy", None),
                           ("r.npz", None), ("parts.parquet", None)]:
        table = read_table(tmp_path / name)
        np.testing.assert_allclose(feature_matrix(table, features), X, rtol=1e-6, err_msg=name)
    assert read_table(tmp_path / "r.npy")["id_str"].tolist()[:3] == ["0", "1", "2"]
    assert read_table(tmp_path / "r.npz")["id_str"].tolist() == frame["id_str"].tolist()
    # a folder of Parquet parts, as Dask writes it
    (tmp_path / "ds").mkdir()
    frame.iloc[:100].to_parquet(tmp_path / "ds" / "part.0.parquet")
    frame.iloc[100:].to_parquet(tmp_path / "ds" / "part.1.parquet")
    np.testing.assert_allclose(feature_matrix(read_table(tmp_path / "ds")), X)


def test_an_extra_table_in_a_config_is_an_unknown_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("min_samples = 5\n[extra]\nanything = 1\n")
    with pytest.raises(InputError, match="unknown key\\(s\\) 'extra'"):
        load_config(cfg)


def test_numpy_values_and_the_edges_earlier_versions_took_are_accepted_and_written_plain(tmp_path, frame):
    import numpy as np

    from raregal.discovery.config import config_from_dict
    from raregal.discovery.estimator import RareClassSearch
    from raregal.discovery.pipeline import run_search

    cfg = config_from_dict({"n_neighbors": np.int64(10), "smooth_cut": np.float32(0.5), "keep_artifacts": np.True_,
                            "merge_max_centroid_ratio": float("inf"), "artifact_cut": 1.0001})
    assert type(cfg.n_neighbors) is int and type(cfg.keep_artifacts) is bool and cfg.merge_max_centroid_ratio == float("inf")
    frame.to_parquet(tmp_path / "reps.parquet")
    run_search(tmp_path / "reps.parquet", tmp_path / "run", n_neighbors=np.int64(10), min_samples=np.int32(5),
               map_2d=np.False_, report=False)
    toml = (tmp_path / "run" / "config.toml").read_text()
    assert "n_neighbors = 10\n" in toml and "min_samples = 5\n" in toml and "map_2d = false" in toml
    for verbose in (0, 1, True):
        RareClassSearch(verbose=verbose)._check_params()  # scikit-learn's convention: an int level or a bool


def test_search_of_a_path_records_the_input_and_of_a_frame_does_not(tmp_path, frame):
    import raregal

    frame.to_parquet(tmp_path / "reps.parquet")
    params = dict(n_neighbors=10, min_samples=5, map_2d=False)
    by_path = raregal.search(tmp_path / "reps.parquet", **params)
    assert by_path.run.summary["input"] == str((tmp_path / "reps.parquet").resolve())
    subset = raregal.read_table(tmp_path / "reps.parquet").iloc[5:]  # changed after reading: not that file any more
    assert raregal.search(subset, **params).run.summary["input"] is None
    with pytest.raises(InputError, match="ids: only for an array"):
        raregal.search(subset, ids=["a"], **params)


def test_a_table_that_cannot_be_read_leaves_no_folder_or_marker_behind(tmp_path):
    from raregal.discovery.pipeline import run_search
    from raregal.errors import InputError

    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="bad.parquet"):
        run_search(bad, tmp_path / "a" / "b" / "run")
    assert not (tmp_path / "a").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="bad.parquet"):
        run_search(bad, tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []
