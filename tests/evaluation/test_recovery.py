"""raregal.evaluation.recovery on hand-made label sets whose answers are known."""

import json

import numpy as np
import pytest

from raregal.errors import InputError
from raregal.evaluation.recovery import format_scores, score_clusters


def _labels():
    # 20 bulk, 10 "ring", 4 "trail"
    true = np.array(["bulk"] * 20 + ["ring"] * 10 + ["trail"] * 4)
    labels = np.full(34, -1)
    labels[20:28] = 3        # 8 of 10 rings in cluster 3 ...
    labels[[0, 1]] = 3       # ... with 2 bulk: purity 8/10
    labels[28:30] = 5        # 2 rings in cluster 5
    labels[30:34] = 7        # all 4 trails in cluster 7 ...
    labels[2:6] = 7          # ... with 4 bulk: purity 0.5
    return true, labels


def test_known_answers():
    true, labels = _labels()
    s = score_clusters(true, labels)
    ring, trail = s["classes"]["ring"], s["classes"]["trail"]
    assert ring == {"n_true": 10, "best_cluster": 3, "recall": 0.8, "purity": 0.8,
                    "f1": pytest.approx(0.8), "recovered": True}
    assert trail["best_cluster"] == 7 and trail["recall"] == 1.0 and trail["purity"] == 0.5
    assert trail["recovered"] is False  # purity 0.5 < 0.8
    assert s["n_recovered"] == 1 and s["n_classes"] == 2
    assert s["bulk_fraction_clustered"] == pytest.approx(6 / 20)
    assert s["n_clusters"] == 3 and s["n_rows"] == 34
    json.dumps(s)  # JSON-serialisable as is


def test_thresholds_change_recovery():
    true, labels = _labels()
    assert score_clusters(true, labels, min_purity=0.5)["n_recovered"] == 2
    assert score_clusters(true, labels, min_recall=0.9)["n_recovered"] == 0


def test_best_match_is_f1_not_recall():
    # class of 10: cluster 0 holds all 10 among 90 bulk (recall 1, purity 0.1, F1 0.18);
    # cluster 1 holds 6 alone (recall 0.6, purity 1, F1 0.75) -> cluster 1 is the match
    true = np.array(["x"] * 10 + ["bulk"] * 90 + ["x"] * 6)
    labels = np.array([0] * 100 + [1] * 6)
    e = score_clusters(true, labels)["classes"]["x"]
    assert e["best_cluster"] == 1 and e["recall"] == pytest.approx(6 / 16) and e["purity"] == 1.0


def test_unclustered_class_and_no_bulk():
    s = score_clusters(np.array(["a", "a", "b"]), np.array([-1, -1, 0]))
    assert s["classes"]["a"] == {"n_true": 2, "best_cluster": None, "recall": 0.0, "purity": 0.0,
                                 "f1": 0.0, "recovered": False}
    assert s["classes"]["b"]["recovered"] is True
    assert s["bulk_fraction_clustered"] is None


def test_nothing_clustered():
    s = score_clusters(["bulk", "a"], [-1, -1])
    assert s["n_recovered"] == 0 and s["n_clusters"] == 0 and s["bulk_fraction_clustered"] == 0.0


def test_ties_go_to_purer_then_lower_id():
    # class of 4: cluster 2 = {2 of class}; cluster 9 = {2 of class}: equal F1 and purity -> id 2
    s = score_clusters(["c"] * 4, [9, 9, 2, 2])
    assert s["classes"]["c"]["best_cluster"] == 2


def test_bad_input_is_named():
    with pytest.raises(InputError, match="rows"):
        score_clusters(["a", "b"], [0])
    with pytest.raises(InputError, match="NaN"):
        score_clusters(["a", "b"], [0.0, np.nan])


def test_format_scores_table():
    true, labels = _labels()
    text = format_scores(score_clusters(true, labels))
    lines = text.splitlines()
    assert lines[0].split() == ["class", "n_true", "cluster", "recall", "purity", "recovered"]
    assert lines[1].split() == ["ring", "10", "3", "0.80", "0.80", "yes"]
    assert lines[2].split() == ["trail", "4", "7", "1.00", "0.50", "no"]
    assert "recovered 1 of 2 classes" in lines[-1] and "30.0% of bulk" in lines[-1]
