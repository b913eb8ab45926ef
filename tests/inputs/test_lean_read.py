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
