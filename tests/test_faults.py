"""Faults a user will meet (issue #30), driven through the command line as a user would.

A full disk is a real one: a small tmpfs (512 KiB, or 4 MiB with a run copied onto it) that the user's own
files fill (needs root to mount; skipped with the reason elsewhere).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

import test_embed
import test_embed_dask
from raregal.cli import main

survey = test_embed.survey  # a fixture, used by name: a few dozen images, two of them bad, and a tiny model
client = test_embed_dask.client  # a fixture: a local Dask cluster of 2 worker processes


@contextmanager
def _small_disk(where: Path, size: str):
    """``where`` (made) as the mount point of a tmpfs of ``size`` (``512k``, ``4m``), unmounted afterwards.
    Mounting needs root: the test is skipped, with the reason, where it cannot."""
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip() or 'not root'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def _fill(where: Path, leave: int = 4096) -> None:
    """Fill the disk of ``where`` with the user's own files, leaving ``leave`` bytes (a page) free."""
    (where / "notes.txt").write_text("the user's own notes\n")
    free = os.statvfs(where).f_bavail * os.statvfs(where).f_frsize
    (where / "data.bin").write_bytes(b"\x01" * (free - leave))
    assert os.statvfs(where).f_bavail * os.statvfs(where).f_frsize <= leave


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a 512 KiB tmpfs nearly filled by the user's own files (unmounted after the test)."""
    with _small_disk(tmp_path / "small", "512k") as where:
        (where / "notes.txt").write_text("the user's own notes\n")
        (where / "data.bin").write_bytes(b"\x01" * 504 * 1024)
        yield where


@pytest.fixture(params=[
    pytest.param(4096, id="one page left"),
    pytest.param(0, id="no page left"),
])
def run_on_a_full_disk(request, tmp_path, tiny_run_dir):
    """A copy of the tiny run on a 4 MiB tmpfs that the user's own files then fill (a page left, or none)."""
    with _small_disk(tmp_path / "small", "4m") as where:
        shutil.copytree(tiny_run_dir, where / "run", ignore=shutil.ignore_patterns("report", "similar"))
        _fill(where, leave=request.param)
        yield where / "run"


def _snapshot(*roots: Path) -> dict:
    """Every file under ``roots`` (a file itself, or a folder's tree): its bytes and mtime, to show that a
    command changed none of them."""
    files = [r for r in roots if r.is_file()] + [f for r in roots if r.is_dir() for f in r.rglob("*") if f.is_file()]
    return {str(f): (f.read_bytes(), f.stat().st_mtime_ns) for f in files}


def _one_error_line(err: str, command: str) -> str:
    """The one error line of ``raregal COMMAND`` in ``err`` (after any progress output), checked to be the last
    thing written and to come without a traceback."""
    line = [x[x.index(f"raregal {command}: error"):] for x in err.splitlines() if f"raregal {command}: error" in x]
    assert len(line) == 1 and "Traceback" not in err and err.strip().endswith(line[0]), err
    return line[0]


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs is Linux's")
def test_search_on_a_full_disk_is_one_line_and_loses_nothing(full_disk, tiny_run_dir, capsys):
    reps = tiny_run_dir.parent / "reps.parquet"
    code = main(["search", str(reps), "--out", str(full_disk / "run"), "--n-neighbors", "10", "--min-samples", "5",
                 "--min-cluster-size", "10", "--no-report"])
    err = capsys.readouterr().err  # progress lines, then the error
    line = [x for x in err.splitlines() if x.startswith("raregal search: error")]
    assert code == 2 and len(line) == 1 and "Traceback" not in err and err.strip().endswith(line[0])
    assert line[0].startswith("raregal search: error: cannot write ") and str(full_disk / "run") in line[0]
    assert "the disk is full" in line[0]
    assert (full_disk / "notes.txt").read_text() == "the user's own notes\n"
    assert (full_disk / "data.bin").read_bytes() == b"\x01" * 504 * 1024
    leftovers = [p.name for p in (full_disk / "run").rglob("*") if p.name.startswith(".") and "parquet" in p.name] \
        if (full_disk / "run").exists() else []
    assert leftovers == []  # no half-written temporary file


@pytest.mark.parametrize("args, says", [
    (["--seed", "-1"], "error: --seed -1: must be a whole number in 0..4294967295"),
    (["--seed", str(2**32)], f"error: --seed {2**32}: must be a whole number in 0..4294967295"),
    (["--metric", "chebyshev"], "error: --metric 'chebyshev': must be one of ('euclidean', 'cosine', "),
])
def test_out_of_range_search_settings_are_one_line_before_any_compute(tiny_run_dir, tmp_path, capsys, args, says):
    reps = tiny_run_dir.parent / "reps.parquet"
    assert main(["search", str(reps), "--out", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and not (tmp_path / "run").exists()


def test_unknown_metric_in_a_config_file_names_the_key(tiny_run_dir, tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text('metric = "chebyshev"\n')
    reps = tiny_run_dir.parent / "reps.parquet"
    assert main(["search", str(reps), "--out", str(tmp_path / "run"), "--config", str(config)]) == 2
    assert f"{config}: metric = 'chebyshev': must be one of (" in capsys.readouterr().err


def test_metric_flag_reaches_the_run(tiny_run_dir, tmp_path):
    reps = tiny_run_dir.parent / "reps.parquet"
    assert main(["search", str(reps), "--out", str(tmp_path / "run"), "--metric", "cosine", "--n-neighbors", "10",
                 "--min-samples", "5", "--min-cluster-size", "10", "--no-report", "--no-2d"]) == 0
    assert 'metric = "cosine"' in (tmp_path / "run" / "config.toml").read_text()


def test_a_5000_character_id_never_becomes_a_file_name_too_long(tiny_run_dir, tmp_path, capsys):
    import shutil

    import pandas as pd

    from raregal.atomic import safe_file_name

    run = shutil.copytree(tiny_run_dir, tmp_path / "run")
    long_id = "J" + "0123456789" * 500
    # an id that is not in the table: the default output name is made first, then the id is refused
    assert main(["similar", str(run), "--ids", long_id, "--no-gallery"]) == 2
    err = capsys.readouterr().err
    assert "not in the representation table" in err and "too long" not in err
    # an id that is: the table is written under a short, safe name
    known = pd.read_parquet(run / "clusters.parquet")["id_str"].iloc[5]
    assert main(["similar", str(run), "--ids", known, "--no-gallery", "-k", "3"]) == 0
    names = [p.name for p in (run / "similar").iterdir()]
    assert all(len(n) <= 120 for n in names)
    # the one name-maker: characters, length, and two long ids stay apart
    a, b = safe_file_name(long_id), safe_file_name(long_id + "x")
    assert a != b and len(a) <= 100 and len(b) <= 100 and set(a) <= set("J0123456789-abcdef")
    assert safe_file_name("../../etc/passwd") == "_.._etc_passwd" and safe_file_name("") == "_"


def test_vote_fractions_outside_0_1_are_refused_naming_the_column(tiny_run_dir, tmp_path, capsys):
    import pandas as pd

    reps = pd.read_parquet(tiny_run_dir.parent / "reps.parquet")
    reps.loc[3, "smooth-or-featured_smooth_fraction"] = 1.7
    reps.loc[4, "smooth-or-featured_smooth_fraction"] = float("nan")  # not asked: fine
    bad = tmp_path / "reps.parquet"
    reps.to_parquet(bad)
    assert main(["search", str(bad), "--out", str(tmp_path / "run"), "--n-neighbors", "10", "--min-samples", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'smooth-or-featured_smooth_fraction': 1 vote fraction(s) outside [0, 1]" in err
    assert f"{reps.loc[3, 'id_str']}=1.7" in err and not (tmp_path / "run").exists()


def test_similar_on_a_run_that_lost_its_clusters_says_so(tiny_run_dir, tmp_path, capsys):
    import shutil

    run = shutil.copytree(tiny_run_dir, tmp_path / "run")
    (run / "clusters.parquet").unlink()
    assert main(["similar", str(run), "--cluster", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a run directory (clusters.parquet missing)" in err and "--out is needed" not in err
    assert main(["similar", str(run), "--cluster", "0", "--out", str(tmp_path / "s.csv")]) == 2
    assert "clusters.parquet missing" in capsys.readouterr().err


def test_a_run_without_clusters_says_it_has_none(tiny_run_dir, tmp_path, capsys):
    import shutil

    import pandas as pd

    run = shutil.copytree(tiny_run_dir, tmp_path / "run")
    clusters = pd.read_parquet(run / "clusters.parquet")
    clusters["cluster"] = -1
    clusters.to_parquet(run / "clusters.parquet")
    assert main(["similar", str(run), "--cluster", "2", "--no-gallery"]) == 2
    assert "no cluster 2 in this run; it has no clusters" in capsys.readouterr().err


def test_a_report_without_the_tree_says_so(tiny_run_dir, tmp_path, capsys):
    import shutil

    run = shutil.copytree(tiny_run_dir, tmp_path / "run")
    (run / "condensed_tree.parquet").unlink()
    assert main(["report", str(run)]) == 0
    assert "has no condensed_tree.parquet" in capsys.readouterr().err
    assert "The run has no condensed_tree.parquet." in (run / "report" / "index.html").read_text()


def test_training_with_no_readable_image_says_so_not_batch_size(tmp_path, capsys):
    import pandas as pd

    catalog = tmp_path / "catalog.csv"
    pd.DataFrame({"id_str": ["a", "b", "c"], "file_loc": ["no/a.png", "no/b.png", "no/c.png"]}).to_csv(catalog,
                                                                                                      index=False)
    assert main(["train", "--catalog", str(catalog), "--objective", "contrastive", "--out", str(tmp_path / "m"),
                 "--batch-size", "2", "--arch", "resnet18", "--input-size", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert "none of the 3 images of the catalog can be read" in err and "--batch-size" not in err


def test_vote_counts_that_are_not_whole_numbers_are_named(caplog):
    import pandas as pd

    from raregal.inputs import gz_trees
    from raregal.encoder.train import vote_counts

    tree = gz_trees.get("gz-desi")
    frame = pd.DataFrame({a: [3.0, 1.0] for a in tree.answers})
    frame[tree.answers[0]] = [0.25, 2.0]
    with caplog.at_level("WARNING", logger="raregal"):
        counts = vote_counts(frame, "gz-desi")
    assert counts[0, 0] == pytest.approx(0.25) and "not whole numbers in 1 column(s)" in caplog.text
    frame[tree.answers[1]] = [float("inf"), 1.0]
    with pytest.raises(Exception, match="negative or infinite vote counts"):
        vote_counts(frame, "gz-desi")


def test_a_search_of_too_few_galaxies_does_not_suggest_the_value_it_has(tmp_path, capsys):
    import numpy as np

    table = tmp_path / "one.npy"
    np.save(table, np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32))
    assert main(["search", str(table), "--out", str(tmp_path / "run"), "--n-neighbors", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "only 3 galaxies to search" in err and "try --n-neighbors 2" not in err


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs is Linux's")
def test_embed_on_a_full_disk_is_one_line_and_resumes_when_there_is_room(full_disk, survey, capsys):
    from test_embed import _cli_embed

    out = full_disk / "reps.parquet"
    assert _cli_embed(survey, out) == 2
    err = capsys.readouterr().err  # a progress bar (carriage returns), then the one line
    line = [x[x.index("raregal embed: error"):] for x in err.splitlines() if "raregal embed: error" in x]
    assert len(line) == 1 and "Traceback" not in err
    assert "cannot write " + str(out) + ".parts/part-0" in line[0] and "the disk is full" in line[0]
    assert (full_disk / "notes.txt").read_text() == "the user's own notes\n"
    (full_disk / "data.bin").unlink()  # the user makes room; the same command finishes the job
    assert _cli_embed(survey, out) == 0 and out.exists()


def test_an_infinite_position_is_called_infinite_not_missing():
    import numpy as np

    from raregal.inputs.cutouts import sky_problems

    why = sky_problems(np.array([np.inf, np.nan, 10.0, 400.0]), np.array([0.0, 0.0, -np.inf, 0.0]))
    assert why.tolist() == ["ra is infinite", "ra is missing", "dec is infinite", "ra 400 is outside [0, 360) degrees"]


def _cli_embed_dask(survey, out, *extra):
    return main(["embed", str(survey / "catalog.csv"), "--model", str(survey / "model"), "--out", str(out),
                 "--batch-size", "3", "--partition-size", "8", "--device", "cpu", "--backend", "torch",
                 "--carry", "true_class", *extra])


@pytest.mark.parametrize("case", ["a user's folder", "a user's file", "a user's file in raregal's folder",
                                  "a user's file beside"])
def test_embed_dask_never_writes_into_a_users_folder_and_says_so_before_any_compute(survey, tmp_path, capsys,
                                                                                      monkeypatch, case):
    import raregal.embedding.on_dask as on_dask

    def no_cluster(*args, **kwargs):
        raise AssertionError("a Dask cluster was started for an output that is refused")

    monkeypatch.setattr(on_dask, "make_client", no_cluster)
    out = tmp_path / "reps"
    if case == "a user's file":
        out.write_text("my own table\n")
        named = out
    elif case == "a user's file beside":
        named = tmp_path / "reps.embed.json"
        named.write_text('{"my": "settings"}\n')
    else:
        out.mkdir()
        (out / "part-00000.parquet").write_bytes(b"the user's own part")  # a raregal name, not a raregal file
        named = out
        if case == "a user's file in raregal's folder":  # raregal's manifest, and the user's notes beside it
            (out / "_manifest.json").write_text(json.dumps({"fingerprint": "0" * 64}))
            (out / "notes.txt").write_text("my own notes\n")
            named = "notes.txt"
    before = _snapshot(tmp_path, survey)
    assert _cli_embed_dask(survey, out, "--dask", "local") == 2
    assert _cli_embed_dask(survey, out, "--dask", "local", "--overwrite") == 2  # --overwrite never makes it raregal's
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0] == err[1] and err[0].startswith("raregal embed: error: ")
    assert str(named) in err[0] and "--out" in err[0] and ("raregal did not write" in err[0] or "is a file" in err[0])
    assert _snapshot(tmp_path, survey) == before  # nothing made, changed or deleted
    assert not (tmp_path / "reps.embed.json").exists() or case == "a user's file beside"


@pytest.mark.parametrize("damaged", ["part-00002.parquet", "_part-00002.skipped.csv"])
def test_embed_dask_rerun_after_a_truncated_partition_redoes_it_and_names_it(survey, client, tmp_path, capsys,
                                                                               damaged):
    import pandas as pd

    from raregal.embedding.local import summary_path
    from raregal.inputs.tables import read_table

    out = tmp_path / "reps"
    assert _cli_embed_dask(survey, out, "--dask", client.scheduler.address) == 0
    reference = read_table(out).sort_values("id_str", ignore_index=True)
    bad = out / damaged
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 3])  # as a killed copy or a disk error leaves it
    others = _snapshot(*(p for p in out.glob("part-*.parquet") if p.name != "part-00002.parquet"))
    users = _snapshot(survey)
    capsys.readouterr()
    assert _cli_embed_dask(survey, out, "--dask", client.scheduler.address) == 0
    err = capsys.readouterr().err  # raregal's log lines
    assert "Traceback" not in err and "error" not in err
    assert f"{bad} is damaged or incomplete; the 8 galaxies of its chunk are embedded again" in err
    table = read_table(out).sort_values("id_str", ignore_index=True)
    pd.testing.assert_frame_equal(table, reference)  # redone, the same numbers: the damaged part is never trusted
    assert _snapshot(*map(Path, others)) == others and _snapshot(survey) == users  # nothing else redone or touched
    summary = json.loads(summary_path(out).read_text())
    assert summary["chunks"] == 5 and summary["chunks_resumed"] == 4 and summary["n_embedded"] == 34


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs is Linux's")
def test_report_on_a_full_disk_is_one_line_and_loses_nothing(run_on_a_full_disk, capsys):
    run = run_on_a_full_disk
    disk = run.parent
    before, names = _snapshot(disk), sorted(p.name for p in run.iterdir())
    assert main(["report", str(run)]) == 2
    line = _one_error_line(capsys.readouterr().err, "report")
    # the report is built in a temporary folder beside its place (RUN/.report.tmp-*/), named as the file it failed on
    assert line.startswith("raregal report: error: cannot write " + str(run)) and "the disk is full" in line
    assert _snapshot(disk) == before  # the user's files and the run, byte for byte
    assert sorted(p.name for p in run.iterdir()) == names  # and no half-built report folder left behind


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs is Linux's")
def test_search_overwrite_on_a_full_disk_is_one_line_and_keeps_the_old_run(run_on_a_full_disk, tiny_run_dir, capsys):
    from raregal.runs.model import read_run

    run = run_on_a_full_disk
    disk = run.parent
    before, names = _snapshot(disk), sorted(p.name for p in run.iterdir())
    reps = tiny_run_dir.parent / "reps.parquet"
    assert main(["search", str(reps), "--out", str(run), "--overwrite", "--n-neighbors", "10", "--min-samples", "5",
                 "--min-cluster-size", "10", "--no-report"]) == 2
    line = _one_error_line(capsys.readouterr().err, "search")
    # it fails on the run's marker, rewritten before the old run's files would be removed
    assert line.startswith("raregal search: error: cannot write " + str(run)) and "the disk is full" in line
    assert _snapshot(disk) == before and sorted(p.name for p in run.iterdir()) == names  # the old run, byte for byte
    old, original = read_run(run), read_run(tiny_run_dir)
    assert old.clusters.equals(original.clusters) and old.parameters == original.parameters
