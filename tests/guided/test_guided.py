"""The guided search (issue #26): labels in, the next galaxies to show out; its checks and its label store."""

from __future__ import annotations

import multiprocessing as mp
import shutil
import threading

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from raregal.cli import main
from raregal.errors import InputError
from raregal.guided import GuidedSearch, LabelStore, guide
from raregal.guided.labels import check_labels, labels_vector
from raregal.guided.learner import nearest_member_scores, ranks


def planted(n=600, d=8, n_class=20, seed=0, lumps=2):
    """(X, truth): Gaussian noise with a tight class (rows 0..n_class-1) in two opposite lumps (or one)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    half = n_class // 2 if lumps == 2 else n_class
    X[:half] = 4.0 + 0.2 * rng.normal(size=(half, d))
    X[half:n_class] = -4.0 + 0.2 * rng.normal(size=(n_class - half, d))
    return X, np.arange(n) < n_class


@pytest.fixture
def run_dir(tiny_run_dir, tmp_path):
    """A private copy of the tiny run (labels are written into it)."""
    return shutil.copytree(tiny_run_dir, tmp_path / "run")


def members_of(run_dir, group, n=3):
    clusters = pd.read_parquet(run_dir / "clusters.parquet")
    return clusters.loc[clusters["true_class"] == group, "id_str"].astype(str).tolist()[:n]


# --- the estimator on arrays -------------------------------------------------------------------

@pytest.mark.parametrize("learner", ["hybrid", "nearest", "linear"])
def test_one_member_no_non_members_finds_its_lump(learner):
    X, truth = planted()
    y = np.full(len(X), -1, np.int8)
    y[0] = 1
    batch = GuidedSearch(learner=learner, random_state=0).fit(X, y).next_batch(5)
    assert len(batch) == 5 and 0 not in batch
    assert truth[batch].all(), f"{learner}: top 5 should be members of the planted class"


def test_same_labels_and_seed_same_order_and_labelled_never_shown():
    X, truth = planted()
    y = np.full(len(X), -1, np.int8)
    y[[0, 1, 2, 10, 11, 12]] = 1  # three members in each of the two lumps
    y[100:112] = 0
    a = GuidedSearch(random_state=3).fit(X, y).next_batch(40)
    b = GuidedSearch(random_state=3).fit(X, y).next_batch(40)
    assert np.array_equal(a, b)
    assert (y[a] == -1).all() and len(np.unique(a)) == 40
    # no hyperplane holds two opposite lumps: the cross-validated weights lean on the nearest-member
    # contrast, so both lumps come first
    assert truth[a[:14]].sum() == 14


def test_a_person_finds_the_class_round_by_round():
    X, truth = planted(n=2000, n_class=30, lumps=1)
    y = np.full(len(X), -1, np.int8)
    y[[0, 1, 2]] = 1
    found = 0
    for _ in range(4):
        shown = GuidedSearch(random_state=0).fit(X, y).next_batch(10)
        y[shown] = truth[shown]
        found += int(truth[shown].sum())
    assert found == 27  # every other member within 40 looks


def test_diverse_batch_skips_near_duplicates_that_greedy_takes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 8)).astype(np.float32) * 5
    X[1:6] = X[0] + 0.01 * rng.normal(size=(5, 8))  # five near copies of the member
    y = np.full(len(X), -1, np.int8)
    y[0] = 1
    greedy = GuidedSearch(learner="nearest").fit(X, y).next_batch(4)
    diverse = GuidedSearch(learner="nearest", acquisition="diverse").fit(X, y).next_batch(4)
    assert set(greedy) <= {1, 2, 3, 4, 5}  # the copies first
    assert len(set(diverse) & {1, 2, 3, 4, 5}) == 1 and diverse[0] in {1, 2, 3, 4, 5}  # one copy, then others


def test_nearest_member_scores_match_scipy_and_ranks_are_deterministic():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 12)).astype(np.float32)
    M = X[:7] + 0.01
    np.testing.assert_allclose(-nearest_member_scores(X, M, chunk=64), cdist(X, M).min(axis=1), atol=1e-4)
    s = rng.normal(size=3000).astype(np.float32)
    r = ranks(s)
    assert r.argmax() == s.argmax() and r.min() == 0 and r.max() == 1


def test_memory_mapped_table_is_read_in_chunks(tmp_path):
    X, truth = planted(n=3000)
    np.save(tmp_path / "x.npy", X)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    y = np.full(len(X), -1, np.int8)
    y[0] = 1
    a = GuidedSearch(random_state=0).fit(mm, y).next_batch(9)  # the other 9 of its lump
    b = GuidedSearch(random_state=0).fit(X, y).next_batch(9)
    assert np.array_equal(a, b) and truth[a].all()


@pytest.mark.parametrize("params, named", [({"learner": "svm"}, "learner"), ({"acquisition": "ucb"}, "acquisition"),
                                           ({"random_state": -1}, "random_state"),
                                           ({"random_state": 2**32}, "random_state")])
def test_bad_parameters_name_themselves(params, named):
    X, _ = planted(n=50)
    y = np.r_[1, np.full(49, -1)]
    with pytest.raises(InputError) as err:
        GuidedSearch(**params).fit(X, y)
    assert err.value.param == named and named in str(err.value)


def test_bad_label_vectors():
    X, _ = planted(n=50)
    with pytest.raises(InputError, match="no galaxy is labelled a member"):
        GuidedSearch().fit(X, np.r_[0, np.full(49, -1)])
    with pytest.raises(InputError, match="every galaxy is labelled"):
        GuidedSearch().fit(X, np.r_[1, np.zeros(49, int)])
    with pytest.raises(InputError, match="values other than 1, 0, -1"):
        GuidedSearch().fit(X, np.r_[1, 2, np.full(48, -1)])
    with pytest.raises(InputError, match="batch=0: must be a positive integer"):
        GuidedSearch().fit(X, np.r_[1, np.full(49, -1)]).next_batch(0)


# --- labels tables ---------------------------------------------------------------------------

def test_label_checks_say_what_is_wrong():
    ids = pd.Index([f"g{i}" for i in range(10)])
    with pytest.raises(InputError, match=r"3 of the 4 labelled id\(s\) are not in the table: 'x1', 'x2', 'x3'"):
        labels_vector(check_labels(pd.DataFrame({"id_str": ["g1", "x1", "x2", "x3"], "label": 1})), ids)
    with pytest.raises(InputError, match=r"1 id\(s\) are labelled both 1 and 0: 'g1'"):
        check_labels(pd.DataFrame({"id_str": ["g1", "g1", "g2"], "label": [1, 0, 1]}))
    with pytest.raises(InputError, match=r"2 label\(s\) are not 0 or 1.*g2='yes'.*g3=2"):
        check_labels(pd.DataFrame({"id_str": ["g1", "g2", "g3"], "label": [1, "yes", 2]}))
    with pytest.raises(InputError, match="none of the 2 labelled galaxies is a member"):
        labels_vector(check_labels(pd.DataFrame({"id_str": ["g1", "g2"], "label": 0})), ids)
    with pytest.raises(InputError, match="all 10 galaxies of the table are labelled"):
        labels_vector(check_labels(pd.DataFrame({"id_str": ids, "label": 1})), ids)
    # the same label twice is fine; booleans are 0/1
    ok = check_labels(pd.DataFrame({"id_str": ["g1", "g1", "g2"], "label": [True, True, False]}))
    assert ok["label"].tolist() == [1, 0]


# --- one round on a run: Python and the command line --------------------------------------------

def test_guide_on_a_run_returns_the_class_with_sky_and_images(run_dir):
    ids = members_of(run_dir, 1)
    result = guide(run_dir, pd.DataFrame({"id_str": ids, "label": 1}), batch=10, seed=0)
    nxt = result.next
    assert list(nxt.columns[:3]) == ["id_str", "rank", "score"]
    assert {"file_loc", "cluster", "kept"} <= set(nxt.columns)
    assert not set(nxt["id_str"]) & set(ids)
    assert (nxt["true_class"] == 1).all()
    assert (result.scores["label"] == 1).sum() == 3 and len(result.scores) == 300


def test_cli_guide_writes_next_and_scores_and_refuses_a_users_file(run_dir, tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id_str": members_of(run_dir, 2), "label": 1}).to_csv(labels, index=False)
    out, scores = tmp_path / "next.csv", tmp_path / "all.parquet"
    args = ["guide", str(run_dir), "--labels", str(labels), "--batch", "7", "--out", str(out),
            "--scores-out", str(scores), "--seed", "4"]
    assert main(args) == 0
    first = pd.read_csv(out)
    assert len(first) == 7 and first.columns[0] == "id_str" and (first["true_class"] == 2).all()
    assert "table:" in capsys.readouterr().out
    assert main(args) == 0 and pd.read_csv(out).equals(first)  # its own file: replaced, same order
    assert len(pd.read_parquet(scores)) == 300
    users = tmp_path / "mine.csv"
    users.write_text("my,own,notes\n")
    assert main(args[:-6] + ["--out", str(users)]) == 2
    assert users.read_text() == "my,own,notes\n"
    assert "was not written by `raregal guide`" in capsys.readouterr().err


@pytest.mark.parametrize("rows, extra, message", [
    ([("nope", 1), ("nope2", 1)], [], "2 of the 2 labelled id(s) are not in the table"),
    ([("gal_0000", 1), ("gal_0000", 0)], [], "labelled both 1 and 0"),
    ([("gal_0000", 3)], [], "not 0 or 1"),
    ([("gal_0000", 0)], [], "none of the 1 labelled galaxies is a member"),
    ([("gal_0000", 1)], ["--batch", "0"], "--batch 0: must be a positive integer"),
])
def test_cli_bad_labels_are_one_line_and_write_nothing(run_dir, tmp_path, capsys, rows, extra, message):
    labels = tmp_path / "labels.csv"
    pd.DataFrame(rows, columns=["id_str", "label"]).to_csv(labels, index=False)
    out = tmp_path / "next.csv"
    assert main(["guide", str(run_dir), "--labels", str(labels), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_every_galaxy_labelled(tmp_path, capsys):
    table = tmp_path / "reps.csv"
    pd.DataFrame({"id_str": ["a", "b"], "feat_0": [0.0, 1.0]}).to_csv(table, index=False)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id_str": ["a", "b"], "label": [1, 0]}).to_csv(labels, index=False)
    assert main(["guide", str(table), "--labels", str(labels), "--out", str(tmp_path / "n.csv")]) == 2
    assert "all 2 galaxies of the table are labelled already" in capsys.readouterr().err


# --- the label store ------------------------------------------------------------------------------

def test_store_keeps_classes_apart_and_forgets_on_request(run_dir):
    store = LabelStore(run_dir)
    store.set("rings", ["gal_0001", "gal_0002"], 1)
    store.set("rings", ["gal_0003"], 0)
    store.set("mergers", ["gal_0001"], 0)
    store.set("rings", ["gal_0002"], None)
    assert store.classes() == ["rings", "mergers"]
    rings = store.of_class("rings").set_index("id_str")["label"].to_dict()
    assert rings == {"gal_0001": 1, "gal_0003": 0}
    # guide reads the run's own labels when none are given
    result = guide(run_dir, None, batch=3, class_name="rings")
    assert result.estimator.n_members_ == 1 and result.estimator.n_non_members_ == 1


def test_store_refuses_a_users_folder_and_a_damaged_file(tmp_path, run_dir):
    (tmp_path / "mine").mkdir()
    with pytest.raises(InputError, match="not a raregal run folder"):
        LabelStore(tmp_path / "mine")
    (run_dir / "labels.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="cannot be read as a labels table"):
        LabelStore(run_dir).set("x", ["gal_0001"], 1)
    assert (run_dir / "labels.parquet").read_bytes() == b"not parquet"


def test_two_threads_labelling_at_once_lose_nothing(run_dir):
    def label(prefix):
        for i in range(40):
            LabelStore(run_dir).set("c", [f"{prefix}{i}"], i % 2)

    threads = [threading.Thread(target=label, args=(p,)) for p in ("a", "b")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(LabelStore(run_dir).read()) == 80


def _label_in_process(run_dir, prefix):
    for i in range(25):
        LabelStore(run_dir).set("c", [f"{prefix}{i}"], 1)


def test_two_processes_labelling_at_once_lose_nothing(run_dir):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_label_in_process, args=(run_dir, p)) for p in ("p", "q")]
    [p.start() for p in procs]
    [p.join(60) for p in procs]
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(LabelStore(run_dir).read()["id_str"]) == sorted([f"p{i}" for i in range(25)] +
                                                                   [f"q{i}" for i in range(25)])


def test_scores_do_not_depend_on_the_chunking_and_many_labels_stay_bounded(monkeypatch):
    import raregal.guided.learner as learner

    X, truth = planted(n=3000, n_class=30, lumps=1)
    y = np.full(len(X), -1, np.int8)
    y[[0, 1, 2, 3, 4]] = 1
    y[500:900] = 0
    whole = GuidedSearch(random_state=0).fit(X, y)
    monkeypatch.setattr(learner, "CHUNK", 256)  # 12 chunks on the thread pool, each writing its own rows
    monkeypatch.setattr(learner, "BLOCK_VALUES", 256 * 64)  # and fewer rows per chunk with 405 labelled
    chunked = GuidedSearch(random_state=0).fit(X, y)
    np.testing.assert_array_equal(whole.scores_, chunked.scores_)
    assert np.array_equal(whole.next_batch(20), chunked.next_batch(20)) and truth[whole.next_batch(20)].sum() == 20


def test_ranks_tie_break_and_the_histogram_path(monkeypatch):
    import raregal.guided.learner as learner

    r = ranks(np.zeros(5, np.float32))
    assert list(np.argsort(-r, kind="stable")) == [0, 1, 2, 3, 4]  # ties: the lower row ranks higher
    s = np.random.default_rng(2).normal(size=50_000).astype(np.float32)
    exact = ranks(s)
    monkeypatch.setattr(learner, "EXACT_RANKS", 1000)
    approx = ranks(s)
    assert np.abs(approx - exact).max() < 0.01  # the histogram's ranks are within a bin of the exact ones
    assert (np.diff(approx[np.argsort(s)]) >= 0).all()  # never out of order (float32 may tie close scores)


def test_dataframes_and_non_finite_rows_are_refused_or_read_by_row():
    X, truth = planted(n=200)
    y = np.full(len(X), -1, np.int8)
    y[0] = 1
    a = GuidedSearch(random_state=0).fit(pd.DataFrame(X), y).next_batch(5)
    assert np.array_equal(a, GuidedSearch(random_state=0).fit(X, y).next_batch(5))
    X[7, 3] = np.inf
    with pytest.raises(InputError, match=r"NaN or inf values, e.g. rows \[7\]") as err:
        GuidedSearch().fit(X, y)
    assert err.value.param == "X"


def test_cli_guide_never_writes_over_its_labels(run_dir, tmp_path, capsys):
    labels = tmp_path / "next.csv"
    pd.DataFrame({"id_str": members_of(run_dir, 1), "rank": 1, "score": 1.0, "label": 1}).to_csv(labels, index=False)
    before = labels.read_text()
    assert main(["guide", str(run_dir), "--labels", str(labels), "--out", str(labels)]) == 2
    assert "--out " + str(labels) + ": is also --labels" in capsys.readouterr().err
    assert labels.read_text() == before
