"""Labels given in the explorer, and the guided search over the explorer's galaxies (no HTML, no Bokeh).

:class:`Guide` joins the run's :class:`~raregal.guided.LabelStore` (``RUN_DIR/labels.parquet``:
every click is written at once, and every answer is read back from the file, so two browser tabs
see each other's labels) to a :class:`~raregal.guided.GuidedSearch` over the explorer's neighbour
index (every galaxy of the representation table, also those the pre-filter removed). Rows are
explorer rows (``0..n_all-1``, see :class:`~raregal.views.explore.data.ExplorerData`); a fit is kept for
the labels it was made from, so the same labels give the same proposals without a second fit.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import unicodedata
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd

from raregal.inputs import sky
from raregal.atomic import safe_file_name
from raregal.inputs.tables import ID
from raregal.errors import InputError
from raregal.guided import GuidedSearch, LabelStore
from raregal.guided.labels import CLASS, LABEL

MEMBER, NOT = 1, 0
#: The class a new session labels until a person names another.
DEFAULT_CLASS = "class 1"
#: Longest class name accepted (characters).
MAX_NAME = 80
#: Galaxies the "next to label" strip shows; ranked candidates an export holds by default.
BATCH, TOP = 10, 200
#: Fits kept (one per class and set of labels).
_FITS_KEPT = 4


def check_class_name(name) -> str:
    """``name`` stripped of surrounding space; InputError when empty, over :data:`MAX_NAME` characters
    or holding control characters (line breaks, NUL, ...)."""
    name = str(name).strip()
    if not name:
        raise InputError("a class needs a name", param="class_name")
    if len(name) > MAX_NAME:
        raise InputError(f"a class name has at most {MAX_NAME} characters, got {len(name)}", param="class_name")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise InputError("a class name cannot hold control characters (line breaks, tabs, ...)", param="class_name")
    return name


class Guide:
    """Labelling and the guided search for one explorer's ``data`` (an ExplorerData).

    ``off``: why labelling is off ('' when on: the run folder holds the labels);
    ``guide_off``: why proposals are off ('' when on: the run's representation table was read).
    """

    def __init__(self, data, seed: int = 0):
        self.data, self.seed = data, int(seed)
        self.off = self.guide_off = ""
        self._ids = pd.Index(data.all_ids)
        try:
            self.store: LabelStore | None = LabelStore(data.run.path)
        except InputError as err:
            self.store, self.off = None, str(err)
        index = data.neighbours
        if index is None:
            self.guide_off = data.neighbours_off or "the run's representation table could not be read"
        else:
            row = data._row_of[index.rows]  # index position -> explorer row (-1: not in the run)
            keep = row >= 0
            self._rows = row[keep]  # (M,) fit position -> explorer row
            self._X = index.X if keep.all() else index.X[keep]  # (M, D) in the metric's space
            self._pos = np.full(data.n_all, -1, np.int64)  # explorer row -> fit position (-1: none)
            self._pos[self._rows] = np.arange(len(self._rows))
        self._fits: OrderedDict[tuple[str, str], GuidedSearch] = OrderedDict()
        self._lock = threading.Lock()

    # ---- labels (read back from labels.parquet every time) ---------------------------------
    def table(self) -> pd.DataFrame:
        """Every label of the run (``class``, ``id_str``, ``label``, ``time``, ``source``); empty when off."""
        if self.store is None:
            return pd.DataFrame({CLASS: [], ID: [], LABEL: []})
        return self.store.read()

    def classes(self, table: pd.DataFrame | None = None) -> list[str]:
        """The class names labelled so far, in the order first used."""
        table = self.table() if table is None else table
        return list(dict.fromkeys(table[CLASS].astype(str)))

    def labels(self, class_name: str, table: pd.DataFrame | None = None) -> pd.Series:
        """The labels of ``class_name``: 1/0 (int8) indexed by ``id_str``."""
        table = self.table() if table is None else table
        mine = table[table[CLASS] == class_name]
        return pd.Series(mine[LABEL].to_numpy(np.int8), index=pd.Index(mine[ID].astype(str), name=ID), name=LABEL)

    def of_rows(self, class_name: str, rows, table: pd.DataFrame | None = None) -> np.ndarray:
        """The label of each explorer row of ``rows`` in ``class_name``: (len(rows),) int8, 1, 0 or -1 (none)."""
        ids = self.data.all_ids[np.asarray(rows, np.int64)]
        got = self.labels(class_name, table).reindex(ids)
        return got.fillna(-1).to_numpy(np.int8)

    def counts(self, class_name: str, table: pd.DataFrame | None = None) -> tuple[int, int]:
        """(members, non-members) labelled in ``class_name``."""
        lab = self.labels(class_name, table)
        return int((lab == MEMBER).sum()), int((lab == NOT).sum())

    def rows_of(self, ids) -> np.ndarray:
        """The explorer rows of ``ids`` (-1 for ids not in the run)."""
        return self._ids.get_indexer(pd.Index([str(i) for i in ids]))

    def set(self, class_name: str, rows, label: int | None) -> pd.DataFrame:
        """Label the explorer ``rows`` as ``label`` (1 member, 0 not, None forget) in ``class_name``,
        written to labels.parquet at once; returns every label of the run as written."""
        if self.store is None:
            raise InputError(f"labelling is off: {self.off}")
        ids = self.data.all_ids[np.asarray(rows, np.int64)]
        return self.store.set(check_class_name(class_name), ids, label, source="explore")

    # ---- the guided search -----------------------------------------------------------------
    def _y(self, labels: pd.Series) -> np.ndarray:
        """(M,) int8 labels over the fit's rows: 1, 0, -1; labels of galaxies outside the index are left out."""
        y = np.full(len(self._rows), -1, np.int8)
        rows = self._ids.get_indexer(labels.index)  # -1: not a galaxy of this run
        pos = np.where(rows >= 0, self._pos[np.maximum(rows, 0)], -1)  # -1: no finite representation
        y[pos[pos >= 0]] = labels.to_numpy()[pos >= 0]
        return y

    def fit(self, class_name: str, table: pd.DataFrame | None = None) -> GuidedSearch:
        """The guided search fitted to the labels of ``class_name`` now (kept for the same labels).

        InputError when proposals are off, no galaxy is labelled a member, or every galaxy is labelled."""
        if self.guide_off:
            raise InputError(f"the guided search is off: {self.guide_off}")
        labels = self.labels(class_name, table).sort_index()
        digest = hashlib.sha1(json.dumps([[str(i), int(v)] for i, v in labels.items()]).encode()).hexdigest()
        key = (class_name, digest)
        with self._lock:
            if key in self._fits:
                self._fits.move_to_end(key)
                return self._fits[key]
        est = GuidedSearch(random_state=self.seed).fit(self._X, self._y(labels))
        with self._lock:
            self._fits[key] = est
            while len(self._fits) > _FITS_KEPT:
                self._fits.popitem(last=False)
        return est

    def proposals(self, class_name: str, n: int = BATCH, table: pd.DataFrame | None = None) -> pd.DataFrame:
        """The next ``n`` unlabelled galaxies to show, best first: ``row`` (explorer row), ``id_str``, ``score``."""
        est = self.fit(class_name, table)
        pos = est.next_batch(int(n))
        rows = self._rows[pos]
        return pd.DataFrame({"row": rows, ID: self.data.all_ids[rows], "score": est.scores_[pos]})

    def candidates(self, class_name: str, top: int = TOP) -> pd.DataFrame:
        """The class as far as it is known: the labelled members and the ``top`` best unlabelled galaxies,
        by score (highest first): ``id_str``, ``rank``, ``status`` (member / candidate), ``score``,
        ``cluster``, ``kept`` and ``ra``, ``dec`` (degrees) when the run has sky positions."""
        est = self.fit(class_name)
        members = np.flatnonzero(est.labels_ == MEMBER)
        pos = np.r_[members, est.next_batch(int(top))]
        pos = pos[np.lexsort((pos, -est.scores_[pos]))]
        rows = self._rows[pos]
        every = self.data.every
        out = pd.DataFrame({ID: self.data.all_ids[rows], "rank": np.arange(1, len(rows) + 1),
                            "status": np.where(est.labels_[pos] == MEMBER, "member", "candidate"),
                            "score": est.scores_[pos].astype(np.float64)})
        for col in ("cluster", "kept"):
            out[col] = every[col].to_numpy()[rows]
        if sky.has_coordinates(every):
            out[sky.RA] = every[sky.RA].to_numpy(np.float64)[rows]
            out[sky.DEC] = every[sky.DEC].to_numpy(np.float64)[rows]
        return out


def fits_bytes(frame: pd.DataFrame, class_name: str) -> bytes:
    """``frame`` as a FITS binary table (``ra``/``dec`` in degrees with their UCDs), the class named in ``EXTNAME``."""
    table = sky.unit_table(frame)
    table.meta["EXTNAME"] = safe_file_name(class_name)[:60]
    buf = io.BytesIO()
    table.write(buf, format="fits")
    return buf.getvalue()


def write_candidates(frame: pd.DataFrame, path: str | os.PathLike, class_name: str) -> Path:
    """Write ranked candidates (:meth:`Guide.candidates`) to ``path`` atomically: FITS for ``.fits``/``.fit``,
    else CSV; returns the path."""
    from raregal.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() in (".fits", ".fit"):
            tmp.write_bytes(fits_bytes(frame, class_name))
        else:
            frame.to_csv(tmp, index=False)
    return path
