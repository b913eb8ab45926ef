"""Benchmark an encoder: does its representation keep the classes of a labelled table together?

For a label column (the synthetic survey's ``true_class``, or any column of the representation
table or of a catalog joined on ``id_str``), per class:

* **kNN@k purity.** For each galaxy, the fraction of its ``k`` nearest neighbours in
  representation space (itself excluded) that carry its label. A class's purity is the mean over
  its members; ``mean_purity`` is the unweighted mean over the non-background classes. A class
  scattered at random through the table scores about its share of the table; 1 is perfect.
* **Held-back recall** (how well ``raregal similar`` finds a class from a few known members).
  The members of each non-background class are split with the seed (one generator per class
  name, so adding a class does not change the others' split) into *query* galaxies, half of the
  class but at most ``max_queries``, and *held-back* galaxies, the other R members. ``raregal
  similar``'s ranking (:func:`raregal.similarity.rank_neighbours`: distance to the nearest query
  galaxy, queries never returned) lists the R galaxies of the whole table closest to the
  queries; recall is the fraction of the held-back members in that list. The list has exactly R
  entries, so this is also its precision (R-precision). A class of one galaxy has no recall; the
  background class gets none (its list would be most of the table).
* **Raw-pixel baseline**, when the table (or the catalog) gives ``file_loc``: each image read as
  raregal reads it for an encoder (:func:`raregal.images.dataset.load_image`), resized to 32 × 32, kept
  as 8-bit RGB, flattened and reduced by PCA to the representation's width; then the same two
  numbers on the same query split. An encoder trained on one kind of image can keep another
  kind's classes apart worse than the pixels do; the baseline shows when. Unreadable images are
  skipped (listed by id), so the baseline's classes may be a few galaxies smaller.
* With a search run, the run's recovery scores (:func:`raregal.evaluation.recovery.score_clusters` of the
  run's clusters against the labels).

**Background.** The most common label (or the one named by ``background``) is the ordinary
population: its purity is reported, but it is left out of the means, gets no recall, and is
the ``bulk`` of the run's scores. Distances follow the run's metric: ``"cosine"`` compares unit
vectors. Both numbers use one :class:`~raregal.similarity.NeighbourSearch` per representation
(exact by default, the inverted file for very large tables, as ``raregal similar`` chooses).
"""

from __future__ import annotations

import logging
import zlib

import numpy as np
import pandas as pd

from raregal.inputs.tables import FILE_LOC, ID, read_catalog, representation_table
from raregal.errors import InputError
from raregal.validation import Integer, check_value
from raregal.discovery.distances import EUCLIDEAN_METRICS, metric_space
from raregal.runs.model import is_run_dir
from raregal.similarity import NeighbourSearch, rank_neighbours

log = logging.getLogger("raregal")

PIXEL_SIZE = 32  #: side of the downsampled images of the raw-pixel baseline
_BATCH = 4096  # galaxies per neighbour query in knn_purity
RECALL_DEFINITION = ("per class, half its members (at most max_queries) query raregal similar's nearest-member "
                     "ranking; recall = fraction of the other R members among the R galaxies it returns")


def _prepare(X: np.ndarray, metric: str) -> np.ndarray:
    """(N, D) float32 ranked by ``metric`` under Euclidean search (:func:`raregal.similarity.metric_space`)."""
    return metric_space(X, metric)  # checks the metric (raregal.discovery.distances.check_metric)


def _searcher(X: np.ndarray, metric: str, index: str, n_queries: int) -> NeighbourSearch:
    return NeighbourSearch(_prepare(X, metric), index, n_queries=n_queries)


def _codes(labels) -> np.ndarray:
    return np.unique(np.asarray(labels).astype(str), return_inverse=True)[1].ravel()


def _purity(searcher: NeighbourSearch, codes: np.ndarray, k: int, progress: bool = False) -> np.ndarray:
    """Per-row kNN@k purity over the rows the searcher indexes; ``codes`` (N,) integer labels."""
    n = len(searcher.X)
    out = np.empty(n)
    starts = range(0, n, _BATCH)
    if progress and n > _BATCH:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="kNN purity", unit="batch", leave=False)
    for start in starts:
        rows = np.arange(start, min(start + _BATCH, n))
        _, nb = searcher.search_rows(rows, k + 1)
        drop = nb == rows[:, None]  # the galaxy itself, wherever ties put it
        drop[~drop.any(axis=1), -1] = True  # not found (duplicates, approximate index): drop the farthest
        nb = nb[~drop].reshape(len(rows), k)
        found = nb >= 0
        same = found & (codes[np.maximum(nb, 0)] == codes[rows][:, None])
        out[rows] = same.sum(axis=1) / np.maximum(found.sum(axis=1), 1)
    return out


def knn_purity(X: np.ndarray, labels, k: int, metric: str = "euclidean", *, index: str = "auto",
               progress: bool = False) -> np.ndarray:
    """kNN@k purity of each row of ``X`` (N, D) with ``labels`` (N,): an (N,) float array.

    Row i's value is the fraction of its ``k`` nearest other rows (by ``metric``, ``"euclidean"``
    or ``"cosine"``) whose label equals its own. ``k`` must lie in 1..N-1.
    """
    X = np.asarray(X)
    _check_k(k, len(X))
    if len(labels) != len(X):
        raise InputError(f"labels has {len(labels)} rows but X has {len(X)}")
    return _purity(_searcher(X, metric, index, len(X)), _codes(labels), int(k), progress)


def _check_k(k, n: int) -> None:
    check_value("k", k, Integer(1))
    if k > n - 1:
        raise InputError(f"--k {k}: larger than the {n} galaxies less one (each galaxy's neighbours exclude "
                         f"itself); use --k {max(1, n - 1)} or less")


def split_queries(labels, classes, max_queries: int = 100, seed: int = 0) -> np.ndarray:
    """(N,) bool: the query galaxies of the held-back recall, ``min(n // 2, max_queries)`` per class.

    Each class in ``classes`` draws its queries from its own generator, seeded by ``seed`` and
    the class name, so the split of a class depends only on its members' rows and the seed.
    """
    check_value("max_queries", max_queries, Integer(1))
    labels = np.asarray(labels).astype(str)
    is_query = np.zeros(len(labels), dtype=bool)
    for name in classes:
        members = np.flatnonzero(labels == str(name))
        q = min(len(members) // 2, int(max_queries))
        if q:
            rng = np.random.default_rng([int(seed), zlib.crc32(str(name).encode())])
            is_query[rng.choice(members, q, replace=False)] = True
    return is_query


def _recall(searcher: NeighbourSearch, labels: np.ndarray, is_query: np.ndarray, classes) -> dict:
    """{class: {"recall" (None without queries or held-back members), "n_queries", "n_held_back"}}."""
    out = {}
    for name in classes:
        member = labels == name
        queries, held = np.flatnonzero(member & is_query), np.flatnonzero(member & ~is_query)
        recall = None
        if len(queries) and len(held):
            found = rank_neighbours(searcher.X, queries, len(held), "nearest", searcher)[0]
            recall = float(np.isin(found, held).sum() / len(held))
        out[name] = {"recall": recall, "n_queries": int(len(queries)), "n_held_back": int(len(held))}
    return out


def held_back_recall(X: np.ndarray, labels, is_query, classes=None, metric: str = "euclidean", *,
                     index: str = "auto") -> dict:
    """Held-back recall of each class of ``labels`` (N,) over ``X`` (N, D); see the module docstring.

    ``is_query`` (N,) bool marks the query galaxies (:func:`split_queries`); the other members of
    a class are held back. ``classes`` defaults to every label. Returns ``{class: {"recall",
    "n_queries", "n_held_back"}}``.
    """
    labels = np.asarray(labels).astype(str)
    is_query = np.asarray(is_query, dtype=bool)
    if not len(labels) == len(is_query) == len(X):
        raise InputError(f"X, labels and is_query have {len(X)}, {len(labels)} and {len(is_query)} rows")
    classes = sorted(set(labels)) if classes is None else [str(c) for c in classes]
    return _recall(_searcher(np.asarray(X), metric, index, int(is_query.sum())), labels, is_query, classes)


def class_table(labels, purity: np.ndarray, recall: dict, background: str | None) -> dict:
    """Per-class summary of per-row ``purity`` (N,) and :func:`held_back_recall`'s ``recall``.

    Returns ``{"classes": {name: {"n", "purity", "recall", "n_queries", "n_held_back",
    "background"}}`` (non-background classes by name, then the background), ``"mean_purity"``
    and ``"mean_recall"`` (unweighted means over the non-background classes; None if there is
    none, or no recall)}``.
    """
    labels = np.asarray(labels).astype(str)
    names = sorted(set(labels) - {background}) + ([background] if background in set(labels) else [])
    classes = {}
    for name in names:
        member = labels == name
        r = recall.get(name, {})
        classes[name] = {"n": int(member.sum()), "purity": float(np.mean(purity[member])),
                         "recall": r.get("recall"), "n_queries": r.get("n_queries", 0),
                         "n_held_back": r.get("n_held_back", 0), "background": name == background}
    rare = [c for c in classes.values() if not c["background"]]
    recalls = [c["recall"] for c in rare if c["recall"] is not None]
    return {"classes": classes, "mean_purity": float(np.mean([c["purity"] for c in rare])) if rare else None,
            "mean_recall": float(np.mean(recalls)) if recalls else None}


def _score_space(X, labels, codes, k, metric, index, is_query, classes, background, progress) -> dict:
    """Purity and recall over one representation, with one neighbour index for both."""
    searcher = _searcher(X, metric, index, len(X))
    purity = _purity(searcher, codes, k, progress)
    return class_table(labels, purity, _recall(searcher, labels, is_query, classes), background)


def pixel_baseline(file_locs, n_components: int, size: int = PIXEL_SIZE, seed: int = 0, workers: int = 0,
                   fit_rows: int = 20_000, progress: bool = True, batch_size: int = 256
                   ) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Raw-pixel representation of N images: ``(Z, failed)``.

    Each image is read with :func:`raregal.images.dataset.load_image` (RGB), resized to ``size`` ×
    ``size`` (:func:`raregal.images.dataset.resize`), kept as 8-bit and flattened (3·size² values); PCA
    (fitted on a seeded sample of at most ``fit_rows`` readable images) reduces it to
    ``min(n_components, readable images, 3·size²)`` dimensions. ``Z`` is (N, that) float32 with
    NaN rows for unreadable images; ``failed`` lists ``(row, reason)`` for them.
    """
    import torch
    from sklearn.decomposition import PCA
    from tqdm.auto import tqdm

    from raregal.images.dataset import ImageDataset, collate_images, eval_transform

    locs = ["" if loc is None or (isinstance(loc, float) and np.isnan(loc)) else str(loc) for loc in file_locs]
    dataset = ImageDataset(locs, eval_transform(size), channels=3, resize_uint8=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                         collate_fn=collate_images)
    pixels = np.zeros((len(locs), 3 * size * size), dtype=np.uint8)
    readable = np.zeros(len(locs), dtype=bool)
    failed: list[tuple[int, str]] = []
    for batch in tqdm(loader, desc="pixels", unit="batch", disable=not progress, leave=False):
        idx = batch["index"].numpy()
        if len(idx):
            img = (batch["image"].clamp(0, 1) * 255).round().to(torch.uint8)
            pixels[idx] = img.reshape(len(idx), -1).numpy()
            readable[idx] = True
        failed += [(int(i), str(why)) for i, why in batch["failed"]]
    rows = np.flatnonzero(readable)
    width = int(min(n_components, len(rows), pixels.shape[1]))
    Z = np.full((len(locs), max(width, 1)), np.nan, dtype=np.float32)
    if len(rows) < 2:
        return Z, failed
    rng = np.random.default_rng(seed)
    fit = rows if len(rows) <= fit_rows else np.sort(rng.choice(rows, fit_rows, replace=False))
    pca = PCA(n_components=width, random_state=seed).fit(pixels[fit].astype(np.float32) / 255)
    for start in range(0, len(rows), 8192):
        part = rows[start:start + 8192]
        Z[part] = pca.transform(pixels[part].astype(np.float32) / 255)
    return Z, failed


def _label_values(frame: pd.DataFrame, labels, where: str) -> pd.Series:
    if isinstance(labels, str):
        if labels not in frame.columns:
            raise InputError(f"--labels {labels}: no such column in {where}; columns: "
                             f"{', '.join(map(str, frame.columns[:30]))}{' …' if len(frame.columns) > 30 else ''}")
        return frame[labels]
    values = pd.Series(np.asarray(labels, dtype=object), index=frame.index)
    if len(values) != len(frame):
        raise InputError(f"labels has {len(values)} values but the table has {len(frame)} rows")
    return values


def _load(reps, labels, catalog, features) -> tuple[pd.DataFrame, np.ndarray, str]:
    """(table, X (N, D), where) with the labels in column ``_label`` and file_loc when known."""
    if is_run_dir(reps):
        raise InputError(f"{reps} is a search run directory; give its representation table as REPS "
                         f"and the run with --run")
    where = "the representation table" if isinstance(reps, pd.DataFrame) else str(reps)
    frame, X = representation_table(reps, features, columns=None, where=where)
    frame = frame.copy()
    if catalog is not None:
        cat = read_catalog(catalog)
        take = [c for c in cat.columns if c == FILE_LOC or (c not in frame.columns and c != ID)]
        frame = frame.drop(columns=[FILE_LOC], errors="ignore").merge(cat[[ID] + take], on=ID, how="left")
        where = f"{where} or {catalog}"
        if FILE_LOC in frame.columns and frame[FILE_LOC].isna().any():
            log.warning("evaluate: %d galaxies are not in the catalog %s (no image)",
                        int(frame[FILE_LOC].isna().sum()), catalog)
    frame["_label"] = _label_values(frame, labels, where).to_numpy()
    return frame, X, where


def _background(labels: np.ndarray, background: str | None) -> tuple[str, str]:
    """(background label, how it was chosen); the most common label unless named (ties: by name)."""
    names, counts = np.unique(labels, return_counts=True)
    if background is None:
        return str(names[np.argmax(counts)]), "the most common label"
    if str(background) not in set(names):
        raise InputError(f"--background {background}: no such label; labels: {', '.join(names[:30])}")
    return str(background), "--background"


def _read_run(run):
    """The search run ``run`` (:func:`raregal.runs.model.read_run`); InputError naming --run when it is not one."""
    from raregal.runs.model import is_run_dir, read_run

    if not is_run_dir(run):
        raise InputError(f"--run {run}: not a search run directory (needs clusters.parquet and summary.json)")
    return read_run(run)


def _run_scores(run, ids: np.ndarray, labels: np.ndarray, background: str) -> dict:
    """The run's recovery of the classes: score_clusters over the labelled galaxies (not in the run: -1)."""
    from raregal.evaluation.recovery import score_clusters

    clusters = run.clusters
    cluster = clusters.set_index(clusters[ID].astype(str))["cluster"].reindex(ids)
    missing = int(cluster.isna().sum())
    if missing:
        log.warning("evaluate: %d labelled galaxies are not in the run %s; they count as unclustered", missing,
                    run.path)
    scores = score_clusters(labels, cluster.fillna(-1).astype(np.int64).to_numpy(), bulk=background)
    return {"dir": str(run.path), "n_not_in_run": missing, "scores": scores}


def _pixels(frame: pd.DataFrame, width: int, y, codes, k, metric, index, is_query, classes, background,
            seed, workers, progress) -> dict:
    """The raw-pixel baseline's class table plus what it read; ``skipped`` when too few images read."""
    if workers is None:
        from raregal.workers import default_workers

        workers = default_workers()
    Z, failed = pixel_baseline(frame[FILE_LOC].tolist(), width, seed=seed, workers=workers, progress=progress)
    ok = np.isfinite(Z).all(axis=1)
    ids = frame[ID].to_numpy()
    info = {"size": PIXEL_SIZE, "n_components": int(Z.shape[1]), "n_rows": int(ok.sum()),
            "n_unreadable": len(failed), "unreadable": {str(ids[i]): why for i, why in failed}}
    if failed:
        log.warning("evaluate: %d unreadable images left out of the pixel baseline, e.g. %s",
                    len(failed), ", ".join(map(str, list(info["unreadable"])[:5])))
    if ok.sum() <= k:
        return {**info, "skipped": f"only {int(ok.sum())} readable images; need more than --k {k}"}
    scores = _score_space(Z[ok], y[ok], codes[ok], k, metric, index, is_query[ok], classes, background, progress)
    return {**scores, **info}


def evaluate(reps, labels="true_class", k: int = 10, *, catalog=None, features: str | None = None,
             metric: str | None = None, background: str | None = None, run=None, pixels: bool = True,
             max_queries: int = 100, seed: int = 0, index: str = "auto", workers: int | None = None,
             progress: bool = True) -> dict:
    """Benchmark a representation against labels (see the module docstring for the numbers).

    Parameters
    ----------
    reps : representation table (path, as ``raregal search`` reads it, or DataFrame) with ``id_str``.
    labels : the label column (in ``reps`` or ``catalog``), or an array of N labels.
    k : neighbours of the kNN purity (1..N-1).
    catalog : image catalog joined on ``id_str``: gives columns ``reps`` lacks, and ``file_loc``.
    features : representation column(s) (default ``feat_*``).
    metric : ``euclidean``, ``cosine`` or ``correlation`` (default: the run's metric with ``run``, else euclidean).
    background : the ordinary class (default: the most common label).
    run : a ``raregal search`` run directory whose clusters are scored against the labels.
    pixels : compute the raw-pixel baseline when ``file_loc`` is known.
    max_queries, seed : the held-back split (:func:`split_queries`).
    index : :class:`~raregal.similarity.NeighbourSearch` kind.
    workers : image-decoding processes of the pixel baseline (default: half the cores, at most 4).

    Returns
    -------
    dict (JSON-serialisable): the settings, ``n_rows`` evaluated (labelled, finite features),
    ``n_unlabelled``, ``n_invalid_features``, ``encoder`` (:func:`class_table`'s dict), ``pixels``
    (the same plus ``size``, ``n_components``, ``n_rows``, ``n_unreadable``, ``unreadable`` {id:
    reason}, or ``skipped``; None without images) and ``run`` (``dir``, ``n_not_in_run``,
    ``scores``: :func:`raregal.evaluation.recovery.score_clusters`; None without a run).
    """
    run = _read_run(run) if run is not None else None
    if metric is None and run is not None:
        metric = str((run.parameters or {}).get("metric") or "euclidean")
        if metric not in EUCLIDEAN_METRICS:
            raise InputError(f"--run {run.path}: the run's metric {metric!r} is not one evaluate ranks by "
                             f"({', '.join(EUCLIDEAN_METRICS)}); pass --metric")
    metric = metric or "euclidean"
    _prepare(np.zeros((0, 1)), metric)  # an unknown metric fails before any work
    frame, X, where = _load(reps, labels, catalog, features)
    labelled = frame["_label"].notna().to_numpy()
    valid = labelled & np.isfinite(X).all(axis=1)
    if not labelled.all():
        log.warning("evaluate: %d galaxies without a label are left out", int((~labelled).sum()))
    if (labelled & ~valid).any():
        log.warning("evaluate: %d galaxies with NaN/inf features are left out", int((labelled & ~valid).sum()))
    run_ids, run_labels = frame[ID].to_numpy()[labelled], frame["_label"][labelled].astype(str).to_numpy()
    frame, X = frame[valid].reset_index(drop=True), X[valid]
    y = frame["_label"].astype(str).to_numpy()
    _check_k(k, len(y))
    bg, chosen = _background(y, background)
    classes = sorted(set(y) - {bg})
    is_query = split_queries(y, classes, max_queries, seed)
    codes = _codes(y)
    result = {"reps": where, "labels": labels if isinstance(labels, str) else None, "k": int(k),
              "metric": metric, "background": bg, "background_chosen_by": chosen, "n_rows": int(len(y)),
              "n_unlabelled": int((~labelled).sum()), "n_invalid_features": int((labelled & ~valid).sum()),
              "max_queries": int(max_queries), "seed": int(seed), "recall_definition": RECALL_DEFINITION,
              "encoder": _score_space(X, y, codes, k, metric, index, is_query, classes, bg, progress),
              "pixels": None, "run": None}
    if pixels and FILE_LOC in frame.columns:
        result["pixels"] = _pixels(frame, X.shape[1], y, codes, k, metric, index, is_query, classes, bg,
                                   seed, workers, progress)
    if run is not None:
        result["run"] = _run_scores(run, run_ids, run_labels, bg)
    return result


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_evaluation(result: dict) -> str:
    """The fixed-width table of :func:`evaluate`'s result (plus notes and the run's scores), for printing."""
    enc, pix = result["encoder"], result.get("pixels")
    pix_ok = pix is not None and "classes" in pix
    head = ["class", "n", "purity_encoder"] + (["purity_pixels"] if pix_ok else []) + ["recall_encoder"] + \
        (["recall_pixels"] if pix_ok else [])
    rows = [head]
    for name, e in enc["classes"].items():
        p = pix["classes"].get(name, {}) if pix_ok else {}
        rows.append([name + (" (background)" if e["background"] else ""), str(e["n"]), _num(e["purity"])]
                    + ([_num(p.get("purity"))] if pix_ok else []) + [_num(e["recall"])]
                    + ([_num(p.get("recall"))] if pix_ok else []))
    rows.append(["mean (non-background)", "", _num(enc["mean_purity"])] + ([_num(pix["mean_purity"])] if pix_ok else [])
                + [_num(enc["mean_recall"])] + ([_num(pix["mean_recall"])] if pix_ok else []))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"kNN@{result['k']} purity and held-back recall of {result['labels'] or 'the labels'} over "
             f"{result['n_rows']} galaxies ({result['metric']} distance)"]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
              for r in rows]
    lines.append(f"background: {result['background']!r} ({result['background_chosen_by']}): purity reported, "
                 f"left out of the means, no recall")
    lines.append(f"recall: {result['recall_definition']} (max_queries {result['max_queries']}, seed {result['seed']})")
    skipped = [f"{result[key]} {what}" for key, what in (("n_unlabelled", "unlabelled"),
                                                          ("n_invalid_features", "with NaN/inf features"))
               if result[key]]
    if skipped:
        lines.append(f"left out: {', '.join(skipped)} galaxies")
    if pix is not None:
        lines.append(_pixel_note(pix))
    if result.get("run"):
        from raregal.evaluation.recovery import format_scores

        r = result["run"]
        lines.append(f"search run {r['dir']}" + (f" ({r['n_not_in_run']} labelled galaxies not in it, "
                                                  f"counted unclustered)" if r["n_not_in_run"] else "") + ":")
        lines.append(format_scores(r["scores"]))
    return "\n".join(lines)


def _pixel_note(pix: dict) -> str:
    text = f"pixels: PCA to {pix['n_components']} dimensions of {pix['size']}x{pix['size']} RGB images"
    if pix["n_unreadable"]:
        ids = list(pix["unreadable"])
        text += (f"; {pix['n_unreadable']} unreadable image(s) skipped: {', '.join(ids[:10])}"
                 + (" …" if len(ids) > 10 else ""))
    if "skipped" in pix:
        text += f"; baseline skipped: {pix['skipped']}"
    return text
