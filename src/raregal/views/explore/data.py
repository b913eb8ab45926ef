"""What the explorer serves, shared by all browser sessions: points, thumbnails, neighbours, selections.

The map may hold ~632k galaxies. The browser never gets them all: the server rasterises the
current view with datashader (:func:`raregal.views.report.maps.shade`) and sends at most
``max_points`` markers for hover and click, chosen in a fixed random priority order (clustered
galaxies first), so zooming in reveals every galaxy once few enough are in view and panning
does not make markers jump. Clicks are resolved on the server against all points (k-d tree).
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading

import numpy as np
import pandas as pd

from raregal.inputs import sky
from raregal.inputs.tables import image_sources
from raregal.errors import InputError
from raregal.views.report import maps, morphology, thumbs
from raregal.runs.model import Run
from raregal.similarity import SimilarityIndex
from raregal.views.explore.labelling import Guide

log = logging.getLogger("raregal")


class ExplorerData:
    """Kept galaxies of a run with everything the explorer needs (arrays indexed by kept row).

    Rows ``n..n_all-1`` are the galaxies the pre-filter dropped: not on the map, but they have ids
    (:attr:`all_ids`) and thumbnails, and can be "more like this" answers (:meth:`similar`) and
    guided-search proposals (:attr:`guide`, :class:`~raregal.views.explore.labelling.Guide`).
    """

    def __init__(self, run: Run, max_points: int = 20000, seed: int = 0, neighbours: bool = True,
                 sky_layer: str = sky.DEFAULT_LAYER):
        from scipy.spatial import cKDTree

        if not run.has_map:
            raise InputError(f"{run.path}: the run has no 2-D map (it was searched with --no-2d), which the explorer "
                             "draws; search again without --no-2d to explore it")
        self.run = run
        # kept galaxies first (rows 0..n-1: the map), then those the pre-filter dropped (look-alikes only)
        every = run.clusters.iloc[np.argsort(~run.clusters["kept"].to_numpy(bool), kind="stable")]
        every = every.reset_index(drop=True)
        kept = every.iloc[:int(run.clusters["kept"].sum())]
        self.every, self.table = every, kept  # every row / the map's rows (the first n of every)
        self.n, self.n_all = len(kept), len(every)
        self.all_ids = every["id_str"].astype(str).to_numpy()
        self.x = kept["umap2_0"].to_numpy(np.float64)
        self.y = kept["umap2_1"].to_numpy(np.float64)
        self.labels = kept["cluster"].to_numpy(np.int64)
        self.prob = kept["probability"].to_numpy(np.float64)
        self.ids = self.all_ids[:self.n]
        self.sources = image_sources(every)  # file paths, or images read from the catalog's shards on demand
        # sky positions in degrees (NaN: unknown), checked by load_run (raregal.inputs.sky.with_coordinates)
        self.has_sky = sky.has_coordinates(kept)
        self.ra, self.dec = ((kept[sky.RA].to_numpy(np.float64), kept[sky.DEC].to_numpy(np.float64)) if self.has_sky
                             else (np.full(self.n, np.nan), np.full(self.n, np.nan)))
        self.sky_layer = sky.check_layer(sky_layer)
        self.max_points = int(max_points)
        self.info = run.cluster_info
        self.colors = maps.cluster_colors(self.info["cluster"])
        self.color_of = np.array([self.colors.get(int(k), "#8a8a8a") for k in self.labels], dtype=object)
        self.x_range, self.y_range = maps.data_range(self.x, self.y)
        # priority: clustered first, then the rest, each in a seeded random order
        rng = np.random.default_rng(seed)
        order = np.lexsort((rng.random(self.n), self.labels < 0))
        self.rank = np.empty(self.n, np.int64)
        self.rank[order] = np.arange(self.n)
        finite = np.isfinite(self.x) & np.isfinite(self.y)
        self._finite_rows = np.flatnonzero(finite)
        self._kdtree = cKDTree(np.c_[self.x[finite], self.y[finite]]) if finite.any() else None
        self.medians = maps.label_positions(self.x[finite], self.y[finite], self.labels[finite])
        self.morph = self._morphology()
        self.neighbours_off = "" if neighbours else "turned off"  # why 'more like this' is off, when it is
        self.neighbours = self._neighbour_index() if neighbours else None
        self.selections: dict[str, np.ndarray] = {}
        self.selection_names: dict[str, str] = {}
        self._frames: dict[str, pd.DataFrame] = {}  # tables remembered with a selection (ranked candidates)
        self._votables: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.thumbnail = functools.lru_cache(maxsize=8192)(self._thumbnail)  # per-instance cache
        self.guide = Guide(self)  # labels (RUN_DIR/labels.parquet) and the guided search

    # ---- loading ---------------------------------------------------------------------------
    def _morphology(self) -> dict[int, list[dict]]:
        frac = morphology.run_fractions(self.run)
        if frac is None:
            return {}
        return morphology.cluster_morphology(morphology.aligned(self.table, frac), self.labels, self.info["cluster"])

    def _neighbour_index(self) -> SimilarityIndex | None:
        """The run's similarity index (:meth:`raregal.similarity.SimilarityIndex.from_run`), or None when there is
        none to be had (said with a warning): 'more like this' is then off, the rest of the explorer works."""
        try:
            index = SimilarityIndex.from_run(self.run)
        except Exception as err:  # a missing or damaged input table should not stop the explorer
            self.neighbours_off = str(err)
            log.warning("explore: no usable representation in %s (%s); 'more like this' is off",
                        self.run.summary.get("input"), err)
            return None
        self._row_of = pd.Index(self.all_ids).get_indexer(index.ids)  # index table row -> explorer row
        return index

    # ---- queries ---------------------------------------------------------------------------
    def in_view(self, x0: float, x1: float, y0: float, y1: float, cap: int | None = None) -> tuple[np.ndarray, int]:
        """Rows inside the box, at most ``cap`` of them in priority order, and how many are inside."""
        cap = self.max_points if cap is None else cap
        inside = np.flatnonzero((self.x >= x0) & (self.x <= x1) & (self.y >= y0) & (self.y <= y1))
        if len(inside) > cap:
            inside = inside[np.argpartition(self.rank[inside], cap)[:cap]]
            total = int(((self.x >= x0) & (self.x <= x1) & (self.y >= y0) & (self.y <= y1)).sum())
        else:
            total = len(inside)
        return inside, total

    def nearest(self, x: float, y: float, max_dx: float, max_dy: float) -> int | None:
        """The galaxy nearest (x, y), if within the ellipse of half-axes (max_dx, max_dy); else None."""
        if self._kdtree is None:
            return None
        dist, idx = self._kdtree.query([x, y], k=min(16, len(self._finite_rows)))
        idx = np.atleast_1d(idx)
        rows = self._finite_rows[idx[idx < len(self._finite_rows)]]
        d = ((self.x[rows] - x) / max_dx) ** 2 + ((self.y[rows] - y) / max_dy) ** 2
        best = int(np.argmin(d))
        return int(rows[best]) if d[best] <= 1.0 else None

    def in_polygon(self, xs, ys) -> np.ndarray:
        """Rows whose map position lies inside the polygon (xs, ys) (matplotlib's point-in-path)."""
        from matplotlib.path import Path as MplPath

        poly = np.c_[np.asarray(xs, float), np.asarray(ys, float)]
        if len(poly) < 3:
            return np.zeros(0, np.int64)
        lo, hi = poly.min(0), poly.max(0)
        box = np.flatnonzero((self.x >= lo[0]) & (self.x <= hi[0]) & (self.y >= lo[1]) & (self.y <= hi[1]))
        inside = MplPath(poly).contains_points(np.c_[self.x[box], self.y[box]])
        return box[inside]

    def members(self, k: int, n: int | None = None) -> np.ndarray:
        """Rows of cluster ``k``, most confident first (all, or the first ``n``)."""
        rows = np.flatnonzero(self.labels == k)
        rows = rows[np.argsort(-self.prob[rows], kind="stable")]
        return rows if n is None else rows[:n]

    def similar(self, row: int, k: int = 12) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest other galaxies in representation space, kept or not: (rows, distances).

        Rows ``>= n`` are galaxies the pre-filter dropped (not on the map; :attr:`all_ids`, :meth:`thumbnail`).
        Distances are in the run's metric (:attr:`SimilarityIndex.metric`).
        """
        if self.neighbours is None or not self.neighbours.covers([self.all_ids[row]])[0]:
            return np.zeros(0, np.int64), np.zeros(0)
        found = self.neighbours.query(ids=[self.all_ids[row]], k=k)
        rows = self._row_of[found.rows]
        return rows[rows >= 0], found.distance[rows >= 0]

    def remember(self, rows: np.ndarray, name: str = "selection", frame: pd.DataFrame | None = None) -> str:
        """Keep a selection for export under ``name``; returns its token (the last 20 selections are kept).

        ``frame``: the table to export for it (one row per row of ``rows``), instead of the run's columns.
        """
        token = secrets.token_hex(8)
        with self._lock:
            self.selections[token] = np.asarray(rows, np.int64)
            self.selection_names[token] = name
            if frame is not None:
                self._frames[token] = frame
            while len(self.selections) > 20:
                oldest = next(iter(self.selections))
                self.selections.pop(oldest)
                self.selection_names.pop(oldest, None)
                self._frames.pop(oldest, None)
        return token

    def selection_table(self, token: str) -> pd.DataFrame | None:
        """The table of the remembered selection ``token`` (its own, or the run's columns), None when unknown."""
        with self._lock:
            rows, frame = self.selections.get(token), self._frames.get(token)
        if rows is None:
            return None
        return frame if frame is not None else self.rows_table(rows)

    def votable(self, token: str) -> bytes | None:
        """The remembered selection ``token`` as a VOTable (for SAMP), or None when it is unknown.

        Made once and kept (the last 3): astropy writes ~5,000 rows a second, so a large
        selection is prepared before its URL is sent, and the application's fetch is answered at once.
        """
        from raregal.views.samp import votable_bytes

        with self._lock:
            body = self._votables.get(token)
        table = self.selection_table(token) if body is None else None
        if table is None:
            return body
        body = votable_bytes(table, self.selection_names.get(token, "selection"))
        with self._lock:
            self._votables[token] = body
            while len(self._votables) > 3:
                self._votables.pop(next(iter(self._votables)))
        return body

    def rows_table(self, rows: np.ndarray) -> pd.DataFrame:
        """The run's columns for ``rows`` (for CSV export; rows ``>= n`` are galaxies the pre-filter dropped)."""
        return self.every.iloc[np.asarray(rows, np.int64)].reset_index(drop=True)

    def _thumbnail(self, row: int, size: int = 96) -> bytes:
        """JPEG bytes of galaxy ``row``'s image fitted to ``size`` px (a placeholder when unreadable)."""
        im, why = thumbs.preview_of(self.sources, row, size) if 0 <= row < self.n_all else (None, "no such row")
        if im is None:
            log.debug("explore: image of row %d unreadable: %s", row, why)
            im = thumbs.placeholder(size)
        return thumbs.encode(im)
