"""The end-to-end demo: synthetic survey -> demo encoder -> pre-filter -> UMAP + HDBSCAN -> report.

``raregal demo --out demo_run`` (``make demo``) runs the whole method on a fresh synthetic
survey with planted rare classes, using the small encoder shipped in the package, and prints
which planted classes the clusters recovered, with purity and recall per class.

Layout of ``demo_run/``:

* ``survey/``: the synthetic survey (``catalog.parquet``, ``images/``);
* ``reps.parquet``: its embedding (representation + predicted vote fractions + ``true_class``);
* ``search/``: the run directory of the search (``clusters.parquet``, ``summary.json`` with the
  metrics, ``report/index.html``);
* ``summary.json``: the demo's own summary: settings, counts, per-class scores, timings.

Every stage resumes: a rerun re-uses the survey, embedding and search already on disk when
they were made with the same settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .atomic import write_json
from .runlog import StageTimer, peak_rss_mib

log = logging.getLogger("raregal")


@dataclass
class DemoConfig:
    """Settings of the demo. The survey's seed differs from the one the demo encoder was trained on
    (0), so the demo searches galaxies the encoder has never seen.

    ``rare_fraction`` is each planted rare class's share of the survey (1%: 30 galaxies of each
    class in 3000, enough for HDBSCAN's ``min_cluster_size`` of 10). The search parameters are
    the paper's scaled to a sample of a few thousand (the paper: ``n_neighbors`` 50,
    ``min_samples`` 300 for ~10^5 galaxies).
    """

    n_galaxies: int = 3000
    seed: int = 1
    size: int = 64
    rare_fraction: float = 0.01
    n_neighbors: int = 30
    min_samples: int = 10
    min_cluster_size: int = 10
    keep_artifacts: bool = False
    workers: int | None = None
    search_extra: dict = field(default_factory=dict)


def _stage_done(marker: Path, settings: dict) -> bool:
    try:
        return json.loads(marker.read_text()) == settings
    except (OSError, ValueError):
        return False


def run_demo(out_dir: str | os.PathLike, config: DemoConfig | None = None, progress: bool = True) -> dict:
    """Run the demo into ``out_dir``; return (and write to ``out_dir/summary.json``) its summary.

    The summary holds the settings, the pre-filter counts, the number of clusters, per planted
    class its size, best-matching cluster, recall and purity (:func:`raregal.metrics.score_clusters`),
    the number of classes recovered, where the report is, and seconds per stage.
    """
    from .catalog import read_catalog
    from .config import SearchConfig
    from .embed import embed_catalog, load_model
    from .encoder.loading import demo_model_path
    from .search import run_search
    from .synth import RARE_CLASSES, make_survey

    config = config or DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timer = StageTimer()
    t0 = time.perf_counter()

    with timer.stage("synth"):
        fractions = {c: config.rare_fraction for c in RARE_CLASSES}
        make_survey(config.n_galaxies, out / "survey", seed=config.seed, size=config.size,
                    class_fractions=fractions, n_workers=config.workers, progress=progress)
        catalog = read_catalog(out / "survey" / "catalog.parquet")

    reps = out / "reps.parquet"
    embed_marker = out / ".embed_done.json"
    weights = demo_model_path() / "model.safetensors"
    embed_settings = {"model": "demo", "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
                      "n_galaxies": config.n_galaxies, "seed": config.seed, "size": config.size,
                      "rare_fraction": config.rare_fraction}
    with timer.stage("embed"):
        if reps.exists() and _stage_done(embed_marker, embed_settings):
            log.info("embed: re-using %s", reps)
            embed_summary = json.loads((out / "reps.embed.json").read_text())
        else:
            model = load_model("demo")
            embed_summary = embed_catalog(catalog, model, reps, carry=["true_class"], overwrite=True,
                                          workers=config.workers, progress=progress, model_name="demo")
            write_json(embed_marker, embed_settings)

    search_config = SearchConfig(n_neighbors=config.n_neighbors, min_samples=config.min_samples,
                                 min_cluster_size=config.min_cluster_size, keep_artifacts=config.keep_artifacts,
                                 seed=config.seed, **config.search_extra)
    with timer.stage("search"):
        search = run_search(reps, out / "search", search_config, overwrite=True)  # and search/report/

    metrics = search.get("metrics") or {}
    report = out / "search" / "report" / "index.html"
    summary = {
        "settings": asdict(config),
        "survey": str((out / "survey" / "catalog.parquet").resolve()),
        "representations": str(reps.resolve()),
        "run_dir": str((out / "search").resolve()),
        "report": str(report.resolve()) if report.exists() else None,
        "encoder": {"arch": embed_summary.get("arch"), "representation_dim": embed_summary.get("representation_dim"),
                    "input_size": embed_summary.get("input_size"), "images_per_s": embed_summary.get("images_per_s")},
        "counts": {**search.get("counts", {}), "skipped_images": embed_summary.get("n_skipped")},
        "n_clusters": search.get("n_clusters"),
        "n_recovered": metrics.get("n_recovered"),
        "n_classes": metrics.get("n_classes"),
        "metrics": metrics,
        "timing": {**timer.as_dict(), "wall_seconds": round(time.perf_counter() - t0, 1),
                   "peak_memory_mib": round(peak_rss_mib(), 1)},
    }
    write_json(out / "summary.json", summary)
    return summary


def format_summary(summary: dict) -> str:
    """What the demo prints: per planted class, found or not, recall and purity; then where to look."""
    from .metrics import format_scores

    lines = []
    counts = summary.get("counts", {})
    lines.append(f"survey: {counts.get('input')} galaxies; pre-filter kept {counts.get('kept')} "
                 f"(dropped smooth, edge-on{'' if summary['settings'].get('keep_artifacts') else ', artifacts'}); "
                 f"{summary.get('n_clusters')} clusters")
    if summary.get("metrics"):
        lines.append(format_scores(summary["metrics"]))
    lines.append(f"RECOVERED {summary.get('n_recovered')} OF {summary.get('n_classes')} PLANTED RARE CLASSES "
                 f"in {summary['timing']['wall_seconds']:.0f} s")
    if summary.get("report"):
        lines.append(f"report: {summary['report']}")
    lines.append(f"summary: {Path(summary['run_dir']).parent / 'summary.json'}")
    return "\n".join(lines)
