"""The guided search: from a few examples a person gives to every member of a class.

* :class:`GuidedSearch` (:mod:`.estimator`): the estimator on arrays (``fit(X, y)``, ``next_batch(n)``);
  :mod:`.learner` (how scores are learnt) and :mod:`.acquisition` (which galaxies are shown next);
* :func:`guide` (:mod:`.rank`): one round on a run folder or a table: labels in, the next batch out;
* :mod:`.labels`: reading and checking a person's labels; :class:`LabelStore` (:mod:`.store`):
  ``RUN_DIR/labels.parquet``, the labels given in the explorer.
"""

from raregal.guided.estimator import GuidedSearch
from raregal.guided.labels import read_labels
from raregal.guided.rank import GuideResult, guide
from raregal.guided.store import LabelStore

__all__ = ["GuidedSearch", "GuideResult", "LabelStore", "guide", "read_labels"]
