"""raregal never loses a user's files, fails before the compute, and locks a run folder while writing it."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from raregal.runs import folder
from raregal.cli import main
from raregal.errors import InputError
from raregal.evaluation.planted import make_planted
from raregal.views.report import build_report
from raregal.discovery.pipeline import run_search
from raregal.discovery.estimator import RareClassSearch

SMALL = dict(n_neighbors=10, min_samples=5, min_cluster_size=10, report=False, map_2d=False)


@pytest.fixture
def reps(tmp_path):
    path = tmp_path / "reps.parquet"
    make_planted(n=300, dim=8, group_fractions=(0.05,), seed=0).to_parquet(path)
    return path


@pytest.fixture
def no_fit(monkeypatch):
    """Make any search that reaches the compute fail the test: refusals must come first."""
    def fit(self, X, y=None, timer=None):
        raise AssertionError("the search started computing before refusing")
    monkeypatch.setattr(RareClassSearch, "fit", fit)


@pytest.fixture
def run_copy(tiny_run_dir, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(tiny_run_dir, dst, ignore=shutil.ignore_patterns("report"))
    return dst


def user_folder(path, n=2):
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (path / f"notes_{i}.txt").write_text(f"my notes {i}")
    return {p.name: p.read_bytes() for p in path.iterdir()}


def contents(path):
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}


# --- data loss -------------------------------------------------------------------------------

def test_report_refuses_a_users_folder_and_keeps_its_files(run_copy, tmp_path, capsys):
    before = user_folder(tmp_path / "mine")
    assert main(["report", str(run_copy), "--out", str(tmp_path / "mine")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "raregal did not write" in err and "Traceback" not in err
    assert contents(tmp_path / "mine") == before


def test_report_refuses_the_run_folder_itself(run_copy, capsys):
    before = contents(run_copy)
    assert main(["report", str(run_copy), "--out", str(run_copy)]) == 2
    assert "is a raregal search run, not a raregal report" in capsys.readouterr().err
    assert contents(run_copy) == before


def test_report_replaces_its_own_report_and_keeps_the_umask(run_copy, tmp_path):
    old = os.umask(0o022)
    try:
        index = build_report(run_copy, out=tmp_path / "rep", progress=False)
        (tmp_path / "rep" / "stale.png").write_bytes(b"from the last report")  # raregal's folder: replaced whole
        index = build_report(run_copy, out=tmp_path / "rep", progress=False)
    finally:
        os.umask(old)
    assert index.is_file() and not (tmp_path / "rep" / "stale.png").exists()
    assert folder.folder_kind(tmp_path / "rep") == "report"
    assert (tmp_path / "rep").stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0700
    assert not list(tmp_path.glob(".rep.*"))  # no temporary folders left beside it


def test_search_refuses_a_users_folder_before_computing(reps, tmp_path, no_fit, capsys):
    before = user_folder(tmp_path / "out")
    assert main(["search", str(reps), "--out", str(tmp_path / "out"), "--min-samples", "5", "--n-neighbors",
                 "10"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "raregal did not write" in err
    assert contents(tmp_path / "out") == before
    with pytest.raises(InputError, match="out_dir .*raregal did not write"):  # Python names the parameter
        run_search(reps, tmp_path / "out", **SMALL)


def test_search_replaces_its_own_run_only_with_overwrite_and_removes_stale_outputs(reps, tmp_path):
    out = tmp_path / "run"
    run_search(reps, out, **SMALL)
    assert folder.folder_kind(out) == "run"
    (out / "report").mkdir()  # a report and a similar table of the earlier run, and a user's note
    (out / "report" / "index.html").write_text("old report")
    (out / "similar").mkdir()
    (out / "similar" / "cluster_0.csv").write_text("id_str,rank,distance\n")
    (out / "my_notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="holds a raregal search run already; pass overwrite"):
        run_search(reps, out, **SMALL)
    summary = run_search(reps, out, overwrite=True, **{**SMALL, "seed": 3})
    assert json.loads((out / "summary.json").read_text())["parameters"]["seed"] == 3 == summary["parameters"]["seed"]
    assert not (out / "report").exists() and not (out / "similar").exists()  # --no-report: no stale report
    assert (out / "my_notes.txt").read_text() == "keep me"


def test_output_never_goes_inside_the_input(tmp_path, no_fit):
    parts = tmp_path / "parts"
    parts.mkdir()
    make_planted(n=300, dim=8, seed=0).to_parquet(parts / "part-0.parquet")
    before = contents(parts)
    for out in (parts, parts / "run"):
        with pytest.raises(InputError, match="inside the input"):
            run_search(parts, out, **SMALL)
    assert contents(parts) == before and not (parts / "run").exists()


def test_out_that_is_a_file_or_cannot_be_made_fails_first(reps, tmp_path, no_fit):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        run_search(reps, tmp_path / "afile", **SMALL)
    with pytest.raises(InputError, match="cannot be created"):
        run_search(reps, tmp_path / "afile" / "run", **SMALL)


# --- the write lock --------------------------------------------------------------------------

_HOLD = """
import sys, time
from raregal.runs.folder import WriteLock
with WriteLock(sys.argv[1], "raregal search (test holder)"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_fails_at_once_naming_the_first(reps, tmp_path, no_fit):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.perf_counter()
        with pytest.raises(InputError, match=rf"being written by another raregal process \(pid {holder.pid} .*"
                                             r"test holder"):
            run_search(reps, out, **SMALL)
        assert time.perf_counter() - t0 < 10
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_killed_process_is_taken_over(reps, tmp_path, caplog):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()  # killed: its lock file stays, with its pid
    holder.wait()
    assert json.loads((out / folder.LOCK).read_text())["pid"] == holder.pid
    summary = run_search(reps, out, **SMALL)
    assert summary["n_clusters"] >= 1
    assert f"stale lock left by pid {holder.pid}" in caplog.text
    assert not (out / folder.LOCK).exists()  # released and removed at the end


# --- fail before the compute -----------------------------------------------------------------

def test_representation_too_narrow_for_the_umap_or_of_width_one(tmp_path, no_fit, capsys):
    frame = make_planted(n=300, dim=4, latent_dim=2, seed=0)
    frame.to_parquet(tmp_path / "r4.parquet")
    with pytest.raises(InputError, match=r"n_components=5 is larger than the representation's width \(4\)"):
        run_search(tmp_path / "r4.parquet", tmp_path / "run", **SMALL)
    assert main(["search", str(tmp_path / "r4.parquet"), "--out", str(tmp_path / "run"), "--min-samples", "5"]) == 2
    assert "--n-components 5 is larger" in capsys.readouterr().err
    frame[["id_str", "feat_0"]].to_parquet(tmp_path / "r1.parquet")
    with pytest.raises(InputError, match="width 1; a search needs at least 2 features"):
        run_search(tmp_path / "r1.parquet", tmp_path / "run", **{**SMALL, "n_components": 1})
    assert not (tmp_path / "run").exists()


def test_degenerate_representations_are_refused(tmp_path, no_fit):
    frame = make_planted(n=300, dim=8, seed=0)
    same = frame.copy()
    same.loc[:, [f"feat_{i}" for i in range(8)]] = 1.5
    same.to_parquet(tmp_path / "same.parquet")
    with pytest.raises(InputError, match=r"all \d+ representations to search are identical"):
        run_search(tmp_path / "same.parquet", tmp_path / "run", **SMALL)
    few = frame.copy()
    few.loc[:, [f"feat_{i}" for i in range(8)]] = np.repeat(np.eye(8)[:3], 100, axis=0)
    few.to_parquet(tmp_path / "few.parquet")
    with pytest.raises(InputError, match=r"only 3 distinct representations among \d+ rows"):
        run_search(tmp_path / "few.parquet", tmp_path / "run", **SMALL)


def test_prefilter_removing_everything_names_the_cuts_and_counts(tmp_path, no_fit, capsys):
    frame = make_planted(n=300, dim=8, seed=0)
    frame["smooth-or-featured_smooth_fraction"] = np.r_[np.full(200, 0.9), np.full(100, 0.1)]
    frame["disk-edge-on_yes_fraction"] = np.r_[np.full(200, 0.0), np.full(100, 0.8)]
    frame.to_parquet(tmp_path / "r.parquet")
    with pytest.raises(InputError, match=r"kept only 0 of 300 galaxies.*smooth >= 0.5 removed 200; "
                                         r"edge-on >= 0.3 removed 100; to keep more, raise smooth_cut"):
        run_search(tmp_path / "r.parquet", tmp_path / "run", **SMALL)
    assert main(["search", str(tmp_path / "r.parquet"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--smooth-cut" in err and "--keep-artifacts" in err and "n-neighbors" not in err


def test_empty_tables_say_so(tmp_path, no_fit):
    (tmp_path / "noparts").mkdir()
    (tmp_path / "noparts" / "README.txt").write_text("nothing here")
    with pytest.raises(InputError, match="holds no Parquet parts"):
        run_search(tmp_path / "noparts", tmp_path / "run", **SMALL)
    (tmp_path / "header.csv").write_text("id_str,feat_0,feat_1\n")
    with pytest.raises(InputError, match="the table has no rows"):
        run_search(tmp_path / "header.csv", tmp_path / "run", **SMALL)


def test_no_2d_with_the_report_on_gives_a_report_without_a_map(tmp_path):
    frame = make_planted(n=300, dim=8, group_fractions=(0.05,), seed=0)
    img = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (16, 16), (40, 80, 120)).save(img)
    frame["file_loc"] = str(img)
    frame.to_parquet(tmp_path / "r.parquet")
    assert main(["search", str(tmp_path / "r.parquet"), "--out", str(tmp_path / "run"), "--no-2d",  # builds the report
                 "--n-neighbors", "10", "--min-samples", "5", "--min-cluster-size", "10"]) == 0
    html = (tmp_path / "run" / "report" / "index.html").read_text()
    assert "No 2-D map: the run was searched with --no-2d." in html
    assert not (tmp_path / "run" / "report" / "map.png").exists()
    from raregal.views.explore.data import ExplorerData
    from raregal.runs.with_images import load_run

    with pytest.raises(InputError, match="no 2-D map .*search again without --no-2d"):
        ExplorerData(load_run(tmp_path / "run"))


# --- embed and similar -----------------------------------------------------------------------

def test_embed_refuses_bad_outputs_before_loading_the_model(tmp_path, monkeypatch, capsys):
    import raregal.embedding.local

    monkeypatch.setattr(raregal.embedding.local, "load_model", lambda *a, **k: pytest.fail("model loaded before checks"))
    cat = tmp_path / "cat.csv"
    pd.DataFrame({"id_str": ["a"], "file_loc": ["a.png"]}).to_csv(cat, index=False)
    (tmp_path / "users.parquet").write_bytes(b"my own table")
    cases = [([str(cat), "--out", str(tmp_path)], "is a folder"),
             ([str(cat), "--out", str(cat), "--overwrite"], "is the input catalog"),
             ([str(cat), "--out", str(tmp_path / "users.parquet")], "exists; pass --overwrite"),
             ([str(cat), "--out", str(tmp_path / "users.parquet"), "--overwrite"], "not written by `raregal embed`"),
             ([str(cat), "--out", str(tmp_path / "r.parquet"), "--batch-size", "0"], "--batch-size 0: must be")]
    for argv, message in cases:
        assert main(["embed", *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert (tmp_path / "users.parquet").read_bytes() == b"my own table"


def test_embed_dask_never_removes_a_users_folder(tmp_path):
    from raregal.embedding.on_dask import _plan

    before = user_folder(tmp_path / "mine")
    with pytest.raises(InputError, match="not a raregal embedding directory"):
        _plan(pd.DataFrame({"id_str": ["a"], "file_loc": ["a.png"]}), None, 4, [], tmp_path / "mine", True)
    assert contents(tmp_path / "mine") == before


def test_similar_warns_when_k_is_capped_and_keeps_users_files(tiny_run_dir, tmp_path, caplog, capsys):
    from raregal.similarity import similar

    result = similar(tiny_run_dir, ids=["gal_0000"], k=10_000, progress=False)
    assert len(result) == 299 and "k=10000 is more than the 299 galaxies" in caplog.text
    mine = tmp_path / "mine.csv"
    mine.write_text("my,own\n1,2\n")
    assert main(["similar", str(tiny_run_dir), "--ids", "gal_0000", "--out", str(mine)]) == 2
    assert "was not written by `raregal similar`" in capsys.readouterr().err
    assert mine.read_text() == "my,own\n1,2\n"


def test_folder_kind_recognises_runs_made_before_markers(tiny_run_dir, tmp_path):
    old = tmp_path / "old_run"  # the tiny run as raregal wrote runs before markers
    shutil.copytree(tiny_run_dir, old, ignore=shutil.ignore_patterns(".raregal*", "report", "similar"))
    assert not (old / folder.MARKER).exists()
    assert folder.folder_kind(old) == "run"
    assert folder.folder_kind(tiny_run_dir) == "run"
    assert folder.folder_kind(tiny_run_dir / "images") is None


def test_cli_error_translation_keeps_other_words():
    from raregal.errors import in_cli_terms

    err = InputError("out_dir /x: n_components=7 too big; out_dir_old stays", param=("out_dir", "n_components"))
    assert in_cli_terms(err, {"out_dir": "--out", "n_components": "--n-components"}) == \
        "--out /x: --n-components 7 too big; out_dir_old stays"
    assert in_cli_terms(InputError("out /data/out/r.parquet: exists", param="out"), {"out": "--out"}) == \
        "--out /data/out/r.parquet: exists"
    assert in_cli_terms(InputError("plain"), {"out": "--out"}) == "plain"
