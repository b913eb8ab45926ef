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
