"""The search's reader: a Parquet representation read straight into X, held once, equal to the plain reader."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raregal.errors import InputError
from raregal.inputs.tables import representation_table


def _frame(n=700, d=6, seed=0, prefix="feat_"):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"id_str": [f"g{i}" for i in range(n)], "ra": rng.uniform(0, 360, n),
                          "dec": rng.uniform(-30, 30, n), "smooth-or-featured_smooth_fraction": rng.random(n)})
    for j in range(d):
        frame[f"{prefix}{j}"] = rng.standard_normal(n).astype(np.float32)
    return frame


def _same(path, features=None):
    plain_frame, plain_X = representation_table(path, features)
    lean_frame, lean_X = representation_table(path, features, lean=True)
    assert np.array_equal(plain_X, lean_X, equal_nan=True) and lean_X.dtype == np.float32
    rep = [c for c in plain_frame.columns if c not in lean_frame.columns]
    pd.testing.assert_frame_equal(plain_frame.drop(columns=rep), lean_frame)
    return rep, lean_frame


def test_a_folder_of_parts_with_many_row_groups_reads_the_same_rows_in_the_same_order(tmp_path):
    frame = _frame(n=2500)
    folder = tmp_path / "reps"
    folder.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), 3)):
        pq.write_table(pa.Table.from_pandas(frame.iloc[rows], preserve_index=False), folder / f"part-{i:05d}.parquet",
                       row_group_size=300)
    rep, lean = _same(folder)
    assert rep == [f"feat_{j}" for j in range(6)] and len(lean) == 2500  # only the representation is left out


def test_integer_columns_nulls_and_a_prefix_are_read_as_the_plain_reader_does(tmp_path):
    frame = _frame(prefix="pca_", d=12)  # pca_10 sorts after pca_9, by index
    frame["pca_3"] = np.arange(len(frame), dtype=np.int64)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    values = table.column("pca_5").to_pylist()
    values[7] = None
    table = table.set_column(table.schema.get_field_index("pca_5"), "pca_5", pa.array(values, pa.float32()))
    pq.write_table(table, tmp_path / "t.parquet")
    rep, _ = _same(tmp_path / "t.parquet", "pca_")
    X = representation_table(tmp_path / "t.parquet", "pca_", lean=True)[1]
    assert np.isnan(X[7, 5]) and X[9, 3] == 9 and X.shape == (700, 12)


def test_a_non_numeric_representation_column_is_named(tmp_path):
    frame = _frame()
    frame["feat_2"] = "x"
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    with pytest.raises(InputError, match="non-numeric feature columns: feat_2"):
        representation_table(tmp_path / "t.parquet", lean=True)


def test_a_list_column_or_another_format_falls_back_to_the_plain_reader(tmp_path):
    frame = _frame()
    listed = frame[["id_str"]].assign(features=list(frame.filter(like="feat_").to_numpy()))
    listed.to_parquet(tmp_path / "list.parquet", index=False)
    frame.to_csv(tmp_path / "t.csv", index=False)
    for path, features in ((tmp_path / "list.parquet", "features"), (tmp_path / "list.parquet", None),
                           (tmp_path / "t.csv", None)):
        plain = representation_table(path, features)
        lean = representation_table(path, features, lean=True)
        assert np.array_equal(plain[1], lean[1]) and list(plain[0].columns) == list(lean[0].columns)


def test_parts_with_other_types_or_fewer_columns_are_read_as_the_plain_reader_reads_them(tmp_path):
    frame = _frame(n=900)
    first, second = frame.iloc[:400].copy(), frame.iloc[400:].copy()
    second["ra"] = second["ra"].astype(np.float32)  # another type in a later part
    first["note"] = "x"  # a column only the first part has
    second = second.drop(columns=["dec"])  # a column a later part lacks
    folder = tmp_path / "reps"
    folder.mkdir()
    first.to_parquet(folder / "part-00000.parquet", index=False)
    second.to_parquet(folder / "part-00001.parquet", index=False)
    _, lean = _same(folder)
    assert lean["dec"].isna().sum() == 500 and (lean["note"].iloc[:400] == "x").all()


def test_pandas_dtypes_and_the_index_come_back_and_an_id_index_is_refused_as_before(tmp_path):
    frame = _frame()
    frame["true_class"] = pd.array([1, None] * 350, dtype="Int64")
    frame["flag"] = pd.array([True, False, None, True] * 175, dtype="boolean")
    frame.iloc[::2].to_parquet(tmp_path / "t.parquet")  # a filtered frame: its index is kept in the file
    _, lean = _same(tmp_path / "t.parquet")
    assert str(lean["true_class"].dtype) == "Int64" and list(lean.index[:3]) == [0, 2, 4]
    frame.set_index("id_str").to_parquet(tmp_path / "ix.parquet")
    for lean_read in (False, True):
        with pytest.raises(InputError, match="missing column 'id_str'"):
            representation_table(tmp_path / "ix.parquet", lean=lean_read)


def test_what_the_plain_reader_refuses_the_lean_one_refuses(tmp_path):
    import decimal

    frame = _frame(n=20)
    frame["feat_1"] = [decimal.Decimal("1.5")] * 20
    frame.to_parquet(tmp_path / "dec.parquet", index=False)
    for lean_read in (False, True):
        with pytest.raises(InputError, match="non-numeric feature columns: feat_1"):
            representation_table(tmp_path / "dec.parquet", lean=lean_read)
    (tmp_path / "nosuffix").mkdir()
    _frame(n=20).to_parquet(tmp_path / "nosuffix" / "part-0", index=False)
    for lean_read in (False, True):
        with pytest.raises(InputError, match="holds no Parquet parts"):
            representation_table(tmp_path / "nosuffix", lean=lean_read)


def test_hive_partitions_are_left_to_the_plain_reader(tmp_path):
    frame = _frame(n=60)
    (tmp_path / "h" / "campaign=dr8").mkdir(parents=True)
    frame.to_parquet(tmp_path / "h" / "campaign=dr8" / "part.parquet", index=False)
    plain, lean = representation_table(tmp_path / "h"), representation_table(tmp_path / "h", lean=True)
    assert "campaign" in lean[0].columns and list(plain[0].columns) == list(lean[0].columns)
