"""The report's sections, one small builder each, filling one :class:`Page` in order.

:func:`raregal.views.report.build_report` makes a :class:`Page` for a run and a temporary folder, then
calls the builders (map, morphology, galleries, montage, tree, downloads); each writes its
pictures and files into the folder and records what the HTML needs. :func:`cluster_rows` and
:func:`page_context` turn the filled page into the template's variables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from raregal.views.report import downloads, gallery, maps, montage, morphology, thumbs, tree

log = logging.getLogger("raregal")

#: How many clusters the montage shows (one row each) and how many images per row.
MONTAGE_ROWS, MONTAGE_COLS = 8, 8
#: Gallery thumbnail size in pixels.
TILE_PX = 128


@dataclass
class Page:
    """What the report of one run shows, filled section by section."""

    run: object  # raregal.runs.model.Run, with images (raregal.runs.with_images.load_run)
    folder: Path  # where the report is being written
    sky_layer: str = "ls-dr10"
    warnings: list = field(default_factory=list)
    map_src: str | None = None
    fractions: object = None  # the run's predicted fractions (DataFrame) or None
    morph: dict = field(default_factory=dict)
    galleries: dict = field(default_factory=dict)
    bad_tiles: list = field(default_factory=list)
    montage_src: str | None = None
    montage_rows: list = field(default_factory=list)
    tree_src: str | None = None
    tree_missing: str = ""
    tree_srcs: dict = field(default_factory=dict)
    tree_texts: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)
    clusters_parquet: str | None = None

    def __post_init__(self):
        info = self.run.cluster_info
        self.ids = [int(k) for k in info["cluster"]]
        self.kept = self.run.kept.reset_index(drop=True)
        self.labels = self.kept["cluster"].to_numpy(np.int64)
        self.colors = maps.cluster_colors(self.ids)
        order = info.assign(_p=info["persistence"].fillna(-1.0)).sort_values(["_p", "size"], ascending=False,
                                                                                kind="stable")
        self.letters = dict(zip([int(k) for k in order["cluster"].head(MONTAGE_ROWS)], montage.letters(MONTAGE_ROWS)))


def map_section(page: Page) -> None:
    """The 2-D map of every kept galaxy (none for a run searched with ``--no-2d``)."""
    if not page.run.has_map:
        page.warnings.append("This run has no 2-D map (it was searched with --no-2d), so the report shows none.")
        return
    kept = page.kept
    maps.plot_map(kept["umap2_0"].to_numpy(), kept["umap2_1"].to_numpy(), page.labels, page.folder / "map.png")
    page.map_src = "map.png"


def morphology_section(page: Page) -> None:
    """Each cluster's distinctive predicted answers, from the run's input table."""
    fractions = morphology.run_fractions(page.run)
    if fractions is None:
        page.warnings.append("Predicted morphology is not shown: the run's input table "
                             f"({page.run.summary.get('input')}) is missing or lacks the *_fraction columns.")
        return
    page.fractions = fractions
    page.morph = morphology.cluster_morphology(morphology.aligned(page.kept, fractions), page.labels, page.ids)


def gallery_section(page: Page, progress: bool = True) -> None:
    """A gallery of each cluster's most confident members; unreadable images are named by id."""
    thumbs.placeholder(TILE_PX).save(page.folder / "missing.png")
    run = page.run
    if not run.has_images:
        page.warnings.append("No image paths are known for this run: galleries show placeholders. "
                             "Give the image catalog with --catalog.")
    page.galleries = gallery.build_galleries(run.clusters, page.ids, page.folder, "missing.png", size=TILE_PX,
                                             progress=progress, sky_layer=page.sky_layer)
    page.bad_tiles = [t for g in page.galleries.values() for t in g.tiles if not t.ok]
    if page.bad_tiles and run.has_images:
        page.warnings.append(f"{len(page.bad_tiles)} gallery image(s) could not be read and show as placeholders, "
                             "e.g. ids: " + ", ".join(t.id_str for t in page.bad_tiles[:10]))
        for t in page.bad_tiles[:50]:
            log.warning("report: image of %s unreadable: %s", t.id_str, t.reason)


def _montage_tiles(clusters, k: int) -> list:
    """Up to MONTAGE_COLS previews of cluster ``k``'s most confident members whose image can be read."""
    from raregal.inputs.tables import image_sources

    tiles = []
    sources = image_sources(gallery.top_members(clusters, k, 3 * MONTAGE_COLS))
    for i in range(len(sources)):
        im = thumbs.preview_of(sources, i, 128)[0]
        if im is not None:
            tiles.append(im)
        if len(tiles) == MONTAGE_COLS:
            break
    return tiles or [thumbs.placeholder(128)]


def montage_section(page: Page) -> None:
    """A Fig.-1-style montage: one lettered row of images per example cluster."""
    info = page.run.cluster_info
    rows, row_labels, captions = [], [], []
    for k, letter in page.letters.items():
        size = int(info.loc[info.cluster == k, "size"].iloc[0])
        rows.append(_montage_tiles(page.run.clusters, k))
        row_labels.append(letter)
        captions.append(f"cluster {k}\n{size:,} galaxies")
        page.montage_rows.append({"letter": letter, "cluster": k})
    if rows:
        montage.montage(rows, row_labels, captions, page.folder / "montage.png")
        page.montage_src = "montage.png"


def tree_section(page: Page) -> None:
    """The condensed tree, and each cluster's place in it (picture and words)."""
    info, run = page.run.cluster_info, page.run
    nodes = {int(k): int(n) for k, n in zip(info["cluster"], info["tree_node"]) if n >= 0}
    if run.tree is None or run.tree.empty:
        page.tree_missing = "The run has no condensed_tree.parquet."
        log.warning("report: %s has no condensed_tree.parquet (or it is empty); the report has no tree section",
                    run.path)
        return
    plot = tree.TreePlot(run.tree, nodes, page.colors)
    plot.save(page.folder / "tree.png")
    page.tree_src = "tree.png"
    (page.folder / "tree").mkdir()
    for k in page.ids:
        if k not in nodes:
            page.tree_texts[k] = "no tree node recorded for this cluster"
            continue
        page.tree_texts[k] = tree.describe_node(tree.node_facts(run.tree, nodes[k]))
        plot.save(page.folder / "tree" / f"c{k}.png", highlight=k, width=560)
        page.tree_srcs[k] = f"tree/c{k}.png"
    plot.close()


def downloads_section(page: Page) -> None:
    """Each cluster's members as CSV and FITS, and the run's clusters.parquet."""
    clusters, fractions = page.run.clusters, page.fractions
    extra = None if fractions is None else \
        fractions[fractions["id_str"].isin(clusters.loc[clusters["cluster"] >= 0, "id_str"])]
    page.links = {k: downloads.write_cluster_files(downloads.members_table(clusters, k, extra),
                                                   page.folder / "downloads", f"cluster_{k}") for k in page.ids}
    page.clusters_parquet = downloads.copy_clusters(page.run.path, page.folder / "downloads")


def cluster_rows(page: Page) -> list[dict]:
    """The template's per-cluster entries."""
    from raregal.discovery.checks.per_cluster import describe_checks

    rows = []
    for _, r in page.run.cluster_info.iterrows():
        k = int(r["cluster"])
        answers = page.morph.get(k, [])
        rows.append({
            "cluster": k, "letter": page.letters.get(k, ""), "color": page.colors[k], "size": int(r["size"]),
            "mean_probability": float(r["mean_probability"]),
            "persistence_text": "n/a" if not np.isfinite(r["persistence"]) else f"{r['persistence']:.3f}",
            "checks_text": describe_checks(r),  # stability, unstable, artifact class (raregal.discovery.checks.per_cluster)
            "morphology": answers,
            "morphology_text": morphology.describe(answers) if page.fractions is not None else "not available",
            "tiles": page.galleries[k].tiles,
            "n_unreadable": page.galleries[k].n_unreadable if page.run.has_images else 0,
            "tree_src": page.tree_srcs.get(k), "tree_text": page.tree_texts.get(k, page.tree_missing),
            "downloads": page.links[k],
        })
    return rows
