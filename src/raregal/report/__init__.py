"""Show a run's clusters: a self-contained HTML report folder (``RUN_DIR/report/``).

:func:`build_report` writes ``index.html`` with an overview (counts through each stage,
clusters, parameters), the 2-D UMAP map (:mod:`.maps`, datashader), a Fig.-1-style montage
(:mod:`.montage`), the condensed tree (:mod:`.tree`), and per cluster a gallery of its most
confident members (:mod:`.gallery`), its distinctive predicted morphology in words
(:mod:`.morphology`), its place in the tree and its members as CSV/FITS (:mod:`.downloads`).
Everything the page shows lives inside the folder; no network is needed to view it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .. import atomic, runfolder, sky
from ..atomic import write_json, write_text
from ..runlog import StageTimer
from .rundir import Run, load_run, read_input

log = logging.getLogger("raregal")

__all__ = ["build_report", "load_run", "Run"]

#: How many clusters the montage shows (one row each) and how many images per row.
MONTAGE_ROWS, MONTAGE_COLS = 8, 8
#: Gallery thumbnail size in pixels.
TILE_PX = 128
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


def _montage_clusters(info) -> list[int]:
    order = info.assign(_p=info["persistence"].fillna(-1.0)).sort_values(["_p", "size"], ascending=False, kind="stable")
    return [int(k) for k in order["cluster"].head(MONTAGE_ROWS)]


def build_report(run_dir: str | os.PathLike, catalog: str | os.PathLike | None = None,
                 out: str | os.PathLike | None = None, progress: bool = True,
                 sky_layer: str = sky.DEFAULT_LAYER) -> Path:
    """Write the HTML report of the run in ``run_dir`` and return the path of its ``index.html``.

    Parameters
    ----------
    run_dir : a run directory written by ``raregal search`` (clusters.parquet, summary.json,
        condensed_tree.parquet).
    catalog : optional catalog joined on ``id_str``: where it says the images are (``file_loc``, or
        a Parquet catalog with the images inside, :func:`raregal.catalog.read_catalog`) replaces the
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

    ``out`` must be new, empty or an earlier raregal report (:mod:`raregal.runfolder`): a folder
    with other files in it, or the run folder itself, is refused with an InputError before any
    work. The run folder is locked while its report is written.
    """
    timer = StageTimer(echo=False)
    sky.check_layer(sky_layer)
    run = load_run(run_dir, catalog)
    out = Path(out) if out is not None else run.path / "report"
    runfolder.check_output_folder(out, "report", overwrite=True, flag="out")
    if not os.access(run.path, os.W_OK):  # a read-only run (shared, archived) reported elsewhere: nothing to lock
        return _build(run, out, timer, progress, sky_layer)
    with runfolder.WriteLock(run.path, "raregal report"):
        return _build(run, out, timer, progress, sky_layer)


def _build(run, out: Path, timer, progress: bool, sky_layer: str) -> Path:
    """Build the report of ``run`` beside ``out`` and swap it in (the run folder is locked)."""
    from . import downloads, gallery, maps, montage, morphology, thumbs, tree
    from .html import render_page
    from .merges import merge_pairs
    from .. import __version__, schema
    from ..catalog import image_sources
    from ..checks import describe_checks

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~atomic.umask())  # mkdtemp makes 0700 folders; use the umask like other outputs
    try:
        runfolder.mark(tmp, "report", "raregal report")
        info = run.cluster_info
        ids = [int(k) for k in info["cluster"]]
        kept = run.kept.reset_index(drop=True)
        labels = kept["cluster"].to_numpy(np.int64)
        colors = maps.cluster_colors(ids)
        letters = dict(zip(_montage_clusters(info), montage.letters(MONTAGE_ROWS)))
        warnings = []

        map_src = None
        if run.has_map:
            with timer.stage("map"):
                maps.plot_map(kept["umap2_0"].to_numpy(), kept["umap2_1"].to_numpy(), labels, tmp / "map.png")
                map_src = "map.png"
        else:
            warnings.append("This run has no 2-D map (it was searched with --no-2d), so the report shows none.")

        with timer.stage("morphology"):
            morph = {}
            fractions = read_input(run, schema.FRACTIONS)
            if fractions is not None and all(c in fractions.columns for c in schema.FRACTIONS):
                frac_kept = kept[["id_str"]].merge(fractions.drop_duplicates("id_str"), on="id_str", how="left")
                morph = morphology.cluster_morphology(frac_kept, labels, ids)
            else:
                fractions = None
                warnings.append("Predicted morphology is not shown: the run's input table "
                                f"({run.summary.get('input')}) is missing or lacks the *_fraction columns.")

        with timer.stage("galleries"):
            thumbs.placeholder(TILE_PX).save(tmp / "missing.png")
            if not run.has_images:
                warnings.append("No image paths are known for this run: galleries show placeholders. "
                                "Give the image catalog with --catalog.")
            galleries = gallery.build_galleries(run.clusters, ids, tmp, "missing.png", size=TILE_PX,
                                                progress=progress, sky_layer=sky_layer)
            bad = [t for g in galleries.values() for t in g.tiles if not t.ok]
            if bad and run.has_images:
                warnings.append(f"{len(bad)} gallery image(s) could not be read and show as placeholders, e.g. ids: "
                                + ", ".join(t.id_str for t in bad[:10]))
                for t in bad[:50]:
                    log.warning("report: image of %s unreadable: %s", t.id_str, t.reason)

        with timer.stage("montage"):
            rows, row_labels, captions, montage_rows = [], [], [], []
            for k, letter in letters.items():
                tiles = []  # the most confident members whose image can be read
                sources = image_sources(gallery.top_members(run.clusters, k, 3 * MONTAGE_COLS))
                for i in range(len(sources)):
                    im = thumbs.preview_of(sources, i, 128)[0]
                    if im is not None:
                        tiles.append(im)
                    if len(tiles) == MONTAGE_COLS:
                        break
                tiles = tiles or [thumbs.placeholder(128)]
                size = int(info.loc[info.cluster == k, "size"].iloc[0])
                rows.append(tiles)
                row_labels.append(letter)
                captions.append(f"cluster {k}\n{size:,} galaxies")
                montage_rows.append({"letter": letter, "cluster": k})
            montage_src = None
            if rows:
                montage.montage(rows, row_labels, captions, tmp / "montage.png")
                montage_src = "montage.png"

        with timer.stage("tree"):
            tree_src, tree_missing, tree_srcs, tree_texts = None, "", {}, {}
            nodes = {int(k): int(n) for k, n in zip(info["cluster"], info["tree_node"]) if n >= 0}
            if run.tree is None or run.tree.empty:
                tree_missing = "The run has no condensed_tree.parquet."
            else:
                plot = tree.TreePlot(run.tree, nodes, colors)
                plot.save(tmp / "tree.png")
                tree_src = "tree.png"
                (tmp / "tree").mkdir()
                for k in ids:
                    tree_texts[k] = tree.describe_node(tree.node_facts(run.tree, nodes[k])) if k in nodes else \
                        "no tree node recorded for this cluster"
                    if k in nodes:
                        plot.save(tmp / "tree" / f"c{k}.png", highlight=k, width=560)
                        tree_srcs[k] = f"tree/c{k}.png"
                plot.close()

        with timer.stage("downloads"):
            extra = None if fractions is None else \
                fractions[fractions["id_str"].isin(run.clusters.loc[run.clusters["cluster"] >= 0, "id_str"])]
            links = {k: downloads.write_cluster_files(downloads.members_table(run.clusters, k, extra),
                                                      tmp / "downloads", f"cluster_{k}") for k in ids}
            clusters_parquet = downloads.copy_clusters(run.path, tmp / "downloads")

        rows_ctx = []
        for _, r in info.iterrows():
            k = int(r["cluster"])
            answers = morph.get(k, [])
            rows_ctx.append({
                "cluster": k, "letter": letters.get(k, ""), "color": colors[k], "size": int(r["size"]),
                "mean_probability": float(r["mean_probability"]),
                "persistence_text": "n/a" if not np.isfinite(r["persistence"]) else f"{r['persistence']:.3f}",
                "checks_text": describe_checks(r),  # stability, unstable, artifact class (raregal.checks)
                "morphology": answers,
                "morphology_text": morphology.describe(answers) if fractions is not None else "not available",
                "tiles": galleries[k].tiles, "n_unreadable": galleries[k].n_unreadable if run.has_images else 0,
                "tree_src": tree_srcs.get(k), "tree_text": tree_texts.get(k, tree_missing),
                "downloads": links[k],
            })
        s = run.summary
        counts = [(_COUNT_LABELS.get(k, k), int(v)) for k, v in (s.get("counts") or {}).items()]
        n_kept = len(kept)
        n_clustered = int((labels >= 0).sum())
        metrics, metric_tables = _split_tables(s.get("metrics"))
        t = s.get("timing") or {}
        timing = [(k, f"{v:.1f} s") for k, v in (t.get("seconds") or {}).items()]
        if t.get("wall_seconds") is not None:
            timing.append(("wall time", f"{t['wall_seconds']:.1f} s"))
        if t.get("peak_memory_mib") is not None:
            timing.append(("peak memory", f"{t['peak_memory_mib']:,.0f} MiB"))
        merges = merge_pairs(s, galleries, colors) if "merge_suggestions" in s else None
        page = render_page(
            title=run.path.resolve().name, run_path=str(run.path.resolve()), counts=counts,
            clusters=rows_ctx, n_clustered=n_clustered,
            fraction_clustered=float(s.get("fraction_clustered", n_clustered / max(n_kept, 1))),
            parameters=_flat(s.get("parameters")), metrics=metrics, metric_tables=metric_tables, timing=timing,
            warnings=warnings, map_src=map_src, montage_src=montage_src, montage_rows=montage_rows,
            tree_src=tree_src, tree_missing=tree_missing, clusters_parquet=clusters_parquet, version=__version__,
            tile_px=TILE_PX, merges=merges, has_sky=sky.has_coordinates(run.clusters), sky_layer=sky_layer)
        write_text(tmp / "index.html", page)
        write_json(tmp / "report.json", {
            "run": str(run.path.resolve()), "n_clusters": len(ids), "n_kept": n_kept, "n_clustered": n_clustered,
            "gallery_tiles": sum(len(g.tiles) for g in galleries.values()),
            "unreadable_images": [{"id_str": t.id_str, "reason": t.reason} for t in bad],
            "montage": {m["letter"]: m["cluster"] for m in montage_rows}, "timing": timer.as_dict()})
        runfolder.check_output_folder(out, "report", overwrite=True, flag="out")  # nothing else came in the way
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    secs = timer.as_dict()["seconds"]
    log.info("report: %d clusters, %d gallery images (%d unreadable) in %.1f s (%s) -> %s",
             len(ids), sum(len(g.tiles) for g in galleries.values()), len(bad), sum(secs.values()),
             ", ".join(f"{k} {v:.1f} s" for k, v in secs.items()), out / "index.html")
    return out / "index.html"
