"""Show a run's clusters: a self-contained HTML report folder (``RUN_DIR/report/``).

:func:`build_report` (``raregal report``; after a search, :func:`report_after_search`) writes ``index.html`` with an overview (counts through each stage,
clusters, parameters), the 2-D UMAP map (:mod:`.maps`, datashader), a Fig.-1-style montage
(:mod:`.montage`), the condensed tree (:mod:`.tree`), and per cluster a gallery of its most
confident members (:mod:`.gallery`), its distinctive predicted morphology in words
(:mod:`.morphology`), its place in the tree and its members as CSV/FITS (:mod:`.downloads`);
each section has its own small builder in :mod:`.sections`. Everything the page shows lives inside the folder; no network is needed to view it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from raregal import atomic
from raregal.runs import folder
from raregal.inputs import sky
from raregal.atomic import write_json, write_text
from raregal.inputs.tables import source_columns
from raregal.timing import StageTimer
from raregal.runs.model import Run
from raregal.runs.with_images import load_run

log = logging.getLogger("raregal")

__all__ = ["build_report", "report_after_search", "load_run", "Run"]

_COUNT_LABELS = {"input": "input galaxies", "after_smooth": "not smooth", "after_edge_on": "not edge-on",
                 "after_artifact": "not artifacts", "kept": "kept for clustering",
                 "rescued_smooth": "smooth but disturbed, kept (--keep-disturbed)"}


def _flat(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out += _flat(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", f"{v:.4g}" if isinstance(v, float) else str(v)))
    return out


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else "" if v is None else str(v)


def _split_tables(d: dict) -> tuple[list[tuple[str, str]], list[dict]]:
    """Scalars of ``d`` as (key, text) pairs, and each dict-of-dicts value as a small table."""
    pairs, tables = [], []
    for k, v in (d or {}).items():
        if isinstance(v, dict) and v and all(isinstance(r, dict) for r in v.values()):
            cols = list(dict.fromkeys(c for r in v.values() for c in r))
            tables.append({"name": str(k), "columns": cols,
                           "rows": [[str(rk)] + [_fmt(r.get(c)) for c in cols] for rk, r in v.items()]})
        elif isinstance(v, dict):
            pairs += _flat(v, f"{k}.")
        else:
            pairs.append((str(k), _fmt(v)))
    return pairs, tables


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace the folder ``out`` by ``tmp`` (old report removed only once the new one is in place)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_report(run_dir: str | os.PathLike, catalog: str | os.PathLike | None = None,
                 out: str | os.PathLike | None = None, progress: bool = True,
                 sky_layer: str = sky.DEFAULT_LAYER) -> Path:
    """Write the HTML report of the run in ``run_dir`` and return the path of its ``index.html``.

    Parameters
    ----------
    run_dir : a run directory written by ``raregal search`` (clusters.parquet, summary.json,
        condensed_tree.parquet).
    catalog : optional catalog joined on ``id_str``: where it says the images are (``file_loc``, or
        a Parquet catalog with the images inside, :func:`raregal.inputs.tables.read_catalog`) replaces the
        run's, and its ``ra``/``dec`` give the sky positions when the run has none; by default the
        run's own ``file_loc`` is used, or for a run of a catalog with the images inside the shards
        its representation table names.
    out : report folder (default ``run_dir/report``). It is built beside its final place and
        swapped in whole, so an interrupted build never leaves half a report.
    progress : show a tqdm bar while making many thumbnails.
    sky_layer : the Legacy Surveys viewer layer the gallery tiles link to (``ls-dr10``, ``ls-dr9``, ...);
        the links are the only part of the report that goes online, and only when clicked.

    A missing or unreadable image shows as a placeholder tile and is counted (and named by id in
    the overview); it never stops the report.

    ``out`` must be new, empty or an earlier raregal report (:mod:`raregal.runs.folder`): a folder
    with other files in it, or the run folder itself, is refused with an InputError before any
    work. The run folder is locked while its report is written.
    """
    sky.check_layer(sky_layer)
    return _report_of(load_run(run_dir, catalog), out, progress, sky_layer)


def report_after_search(run_dir: str | os.PathLike, progress: bool = True) -> Path | None:
    """The report ``raregal search`` (and the demo) builds once its run is written; None when not built.

    Built into ``run_dir/report`` when the run says where its images are (``file_loc``, or
    images inside the catalog its representation table came from); a failing report is logged
    as a warning and never loses the search (``raregal report RUN_DIR`` tries again).
    """
    try:
        run = load_run(run_dir)
        if not source_columns(run.clusters):
            log.debug("no report: the representation table says where no image is (add file_loc, "
                     "or run `raregal report %s --catalog CATALOG`)", run_dir)
            return None
        path = _report_of(run, None, progress, sky.DEFAULT_LAYER)
    except Exception as err:  # noqa: BLE001 - the clusters are written; say what went wrong
        log.warning("the search finished but its report failed: %s (run `raregal report %s`)", err, run_dir)
        return None
    log.info("report in %s", path)
    return path


def _report_of(run, out, progress: bool, sky_layer: str) -> Path:
    """:func:`build_report` of a loaded run."""
    timer = StageTimer(echo=False)
    out = Path(out) if out is not None else run.path / "report"
    folder.check_output_folder(out, "report", overwrite=True, flag="out")
    if not os.access(run.path, os.W_OK):  # a read-only run (shared, archived) reported elsewhere: nothing to lock
        return _build(run, out, timer, progress, sky_layer)
    with folder.WriteLock(run.path, "raregal report"):
        return _build(run, out, timer, progress, sky_layer)


def _timing_rows(summary: dict) -> list[tuple[str, str]]:
    t = summary.get("timing") or {}
    rows = [(k, f"{v:.1f} s") for k, v in (t.get("seconds") or {}).items()]
    if t.get("wall_seconds") is not None:
        rows.append(("wall time", f"{t['wall_seconds']:.1f} s"))
    if t.get("peak_memory_mib") is not None:
        rows.append(("peak memory", f"{t['peak_memory_mib']:,.0f} MiB"))
    return rows


def _page_html(page) -> str:
    """The report's ``index.html`` for a filled :class:`~raregal.views.report.sections.Page`."""
    from raregal import __version__
    from raregal.views.report.html import render_page
    from raregal.views.report.merges import merge_pairs
    from raregal.views.report.sections import TILE_PX, cluster_rows

    run, s = page.run, page.run.to_summary()
    n_kept, n_clustered = len(page.kept), int((page.labels >= 0).sum())
    metrics, metric_tables = _split_tables(s.get("metrics"))
    return render_page(
        title=run.path.resolve().name, run_path=str(run.path.resolve()),
        counts=[(_COUNT_LABELS.get(k, k), int(v)) for k, v in (s.get("counts") or {}).items()],
        clusters=cluster_rows(page), n_clustered=n_clustered,
        fraction_clustered=float(s.get("fraction_clustered", n_clustered / max(n_kept, 1))),
        parameters=_flat(s.get("parameters")), metrics=metrics, metric_tables=metric_tables,
        timing=_timing_rows(s), warnings=page.warnings, map_src=page.map_src, montage_src=page.montage_src,
        montage_rows=page.montage_rows, tree_src=page.tree_src, tree_missing=page.tree_missing,
        clusters_parquet=page.clusters_parquet, version=__version__, tile_px=TILE_PX,
        merges=merge_pairs(s, page.galleries, page.colors) if "merge_suggestions" in s else None,
        has_sky=sky.has_coordinates(run.clusters), sky_layer=page.sky_layer)


def _report_json(page, timer) -> dict:
    """``report.json``: what the report holds, for scripts and for raregal to recognise it."""
    return {"run": str(page.run.path.resolve()), "n_clusters": len(page.ids), "n_kept": len(page.kept),
            "n_clustered": int((page.labels >= 0).sum()),
            "gallery_tiles": sum(len(g.tiles) for g in page.galleries.values()),
            "unreadable_images": [{"id_str": t.id_str, "reason": t.reason} for t in page.bad_tiles],
            "montage": {m["letter"]: m["cluster"] for m in page.montage_rows}, "timing": timer.as_dict()}


def _build(run, out: Path, timer, progress: bool, sky_layer: str) -> Path:
    """Build the report of ``run`` beside ``out`` and swap it in (the run folder is locked)."""
    from raregal.views.report import sections

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~atomic.umask())  # mkdtemp makes 0700 folders; use the umask like other outputs
    try:
        folder.mark(tmp, "report", "raregal report")
        page = sections.Page(run, tmp, sky_layer=sky_layer)
        for name, build in (("map", sections.map_section), ("morphology", sections.morphology_section),
                            ("galleries", lambda p: sections.gallery_section(p, progress)),
                            ("montage", sections.montage_section), ("tree", sections.tree_section),
                            ("downloads", sections.downloads_section)):
            with timer.stage(name):
                build(page)
        write_text(tmp / "index.html", _page_html(page))
        write_json(tmp / "report.json", _report_json(page, timer))
        folder.check_output_folder(out, "report", overwrite=True, flag="out")  # nothing else came in the way
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n_tiles = sum(len(g.tiles) for g in page.galleries.values())
    bad, ids = page.bad_tiles, page.ids
    secs = timer.as_dict()["seconds"]
    log.info("report: %d clusters, %d gallery images (%d unreadable) in %.1f s (%s) -> %s",
             len(ids), n_tiles, len(bad), sum(secs.values()),
             ", ".join(f"{k} {v:.1f} s" for k, v in secs.items()), out / "index.html")
    return out / "index.html"
