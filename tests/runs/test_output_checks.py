"""Every command's output goes through one check (raregal.runs.folder) before any compute.

An unwritable --out (here under /proc, which takes no new files even for root, where permission
bits say yes) is one line naming the flag, exit 2, and nothing is computed; a user's folder or
file is never written into.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raregal.cli import main

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")


@pytest.fixture
def reps(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(60, 8)).astype(np.float32), columns=[f"feat_{i}" for i in range(8)])
    frame.insert(0, "id_str", [f"g{i:02d}" for i in range(60)])
    frame["kind"] = np.where(np.arange(60) < 30, "a", "b")
    path = tmp_path / "reps.parquet"
    frame.to_parquet(path)
    return path


def _one_line(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("command", [
    ["search", "{reps}", "--out", "/proc/raregal_test/run"],
    ["pca", "{reps}", "--out", "/proc/raregal_test_pca"],
    ["evaluate", "{reps}", "--labels", "kind", "-k", "2", "--no-pixels", "--out", "/proc/raregal_test.json"],
    ["similar", "{reps}", "--ids", "g00", "--no-gallery", "--out", "/proc/raregal_test.csv"],
    ["synth", "--n-galaxies", "20", "--out", "/proc/raregal_test_synth"],
    ["embed", "{catalog}", "--out", "/proc/raregal_test.parquet"],
    ["embed", "{catalog}", "--dask", "local", "--out", "/proc/raregal_test_parts"],
    ["guide", "{reps}", "--labels", "{labels}", "--out", "/proc/raregal_test_next.csv"],
    ["guide", "{reps}", "--labels", "{labels}", "--out", "{tmp}/next.csv", "--scores-out", "/proc/raregal_test.pq"],
])
def test_an_unwritable_out_is_one_line_before_any_compute(reps, tmp_path, capsys, monkeypatch, command):
    import raregal.discovery.estimator as estimator
    import raregal.embedding.local as local
    import raregal.guided.estimator as guided

    monkeypatch.setattr(estimator.RareClassSearch, "fit", lambda *a, **k: pytest.fail("the search ran"))
    monkeypatch.setattr(local, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    monkeypatch.setattr(guided.GuidedSearch, "fit", lambda *a, **k: pytest.fail("the guided search ran"))
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame({"id_str": ["a", "b"], "file_loc": ["a.png", "b.png"]}).to_csv(catalog, index=False)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id_str": ["g00", "g01"], "label": [1, 0]}).to_csv(labels, index=False)
    args = [a.format(reps=reps, catalog=catalog, labels=labels, tmp=tmp_path) for a in command]
    assert main(args) == 2
    flag = "--scores-out" if "--scores-out" in args else "--out"
    _one_line(capsys, f"{flag} /proc/raregal_test", "cannot be written, /proc does not take new files")
    assert not (tmp_path / "next.csv").exists()


def test_synth_and_pca_never_write_into_a_users_folder(reps, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "catalog.parquet").write_bytes(b"the user's own catalog")
    (mine / "pca.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    assert main(["synth", "--n-galaxies", "20", "--no-progress", "--out", str(mine)]) == 2
    _one_line(capsys, f"--out {mine}: the folder holds 2 file(s) raregal did not write")
    assert main(["pca", str(reps), "--out", str(mine)]) == 2
    _one_line(capsys, f"--out {mine}: the folder holds 2 file(s) raregal did not write")
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before


def test_pca_reruns_into_its_own_folder(reps, tmp_path):
    out = tmp_path / "pca"
    assert main(["pca", str(reps), "--out", str(out)]) == 0
    first = (out / "pca.json").read_text()
    assert main(["pca", str(reps), "--out", str(out)]) == 0  # its own folder: replaced, not refused
    assert (out / "pca.json").read_text() == first and sorted(p.name for p in out.iterdir()) == [
        ".raregal.json", "explained_variance.png", "pca.json"]
    assert '"kind": "pca"' in (out / ".raregal.json").read_text().replace("'", '"')


def test_a_file_out_that_is_a_folder_is_refused(reps, tmp_path, capsys):
    folder = tmp_path / "a_folder.json"
    folder.mkdir()
    assert main(["evaluate", str(reps), "--labels", "kind", "-k", "2", "--no-pixels", "--out", str(folder)]) == 2
    _one_line(capsys, f"--out {folder}: is a folder; give the file to write")
    assert list(Path(folder).iterdir()) == []


def test_a_pca_folder_of_an_earlier_version_is_rerun_into(reps, tmp_path):
    old = tmp_path / "old_pca"
    old.mkdir()
    (old / "pca.json").write_text('{"components_for": {"0.9": 3}, "input": "x"}')
    (old / "explained_variance.png").write_bytes(b"png")
    assert main(["pca", str(reps), "--out", str(old)]) == 0
    assert '"n_rows": 60' in (old / "pca.json").read_text()
