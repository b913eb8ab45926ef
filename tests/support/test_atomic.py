"""atomic: an interrupted write leaves the old file whole and no temporary file behind."""

import pytest

from raregal import atomic


class Interrupted(BaseException):
    """Stands for a KeyboardInterrupt or a kill arriving mid-write."""


def test_interrupted_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "summary.json"
    atomic.write_json(target, {"n_clusters": 3})
    before = target.read_bytes()

    with pytest.raises(Interrupted):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text('{"n_clus')  # half the new content is on disk ...
            raise Interrupted  # ... when the run is stopped

    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_completed_write_replaces_file(tmp_path):
    target = tmp_path / "a.txt"
    atomic.write_text(target, "old")
    atomic.write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_a_parquet_write_that_fails_midway_keeps_the_old_table(tmp_path, monkeypatch):
    import pandas as pd
    import pyarrow.parquet as pq

    target = tmp_path / "clusters.parquet"
    atomic.write_parquet(target, pd.DataFrame({"id_str": ["a", "b"], "cluster": [0, 1]}))

    def half_then_stop(table, where, **kw):
        with open(where, "wb") as f:
            f.write(b"PAR1 half a table")
        raise Interrupted

    monkeypatch.setattr(pq, "write_table", half_then_stop)
    with pytest.raises(Interrupted):
        atomic.write_parquet(target, pd.DataFrame({"id_str": ["c"], "cluster": [5]}))
    monkeypatch.undo()
    assert pd.read_parquet(target).to_dict("list") == {"id_str": ["a", "b"], "cluster": [0, 1]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clusters.parquet"]


def test_a_json_value_that_cannot_be_written_leaves_the_old_file(tmp_path):
    target = tmp_path / "summary.json"
    atomic.write_json(target, {"n_clusters": 3})
    with pytest.raises(TypeError, match="cannot write object to JSON"):
        atomic.write_json(target, {"n_clusters": object()})
    assert target.read_text() == '{\n  "n_clusters": 3\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_a_run_interrupted_before_its_summary_is_no_run(tmp_path, monkeypatch):
    import pandas as pd

    from raregal.runs import model

    run = model.Run(clusters=pd.DataFrame({"id_str": ["a", "b"], "cluster": [0, -1], "probability": [1.0, 0.0],
                                              "kept": [True, True]}))

    real = atomic.write_json

    def stop_at_summary(path, obj):
        if str(path).endswith(model.SUMMARY):
            raise Interrupted
        return real(path, obj)

    monkeypatch.setattr(atomic, "write_json", stop_at_summary)  # summary.json is written last
    with pytest.raises(Interrupted):
        model.write_run(run, tmp_path / "run")
    assert not model.is_run_dir(tmp_path / "run")  # no reader takes the half-written folder for a run
    left = {p.name for p in (tmp_path / "run").iterdir()} - {".raregal.json", ".raregal.lock"}
    assert left == {"clusters.parquet", "config.toml"}  # whole files, and no temporary one
