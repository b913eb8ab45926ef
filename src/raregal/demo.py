"""The end-to-end demo: synthetic survey -> demo encoder -> pre-filter -> UMAP + HDBSCAN -> report.

``raregal demo --out demo_run`` (``make demo``) runs the whole method on a fresh synthetic
survey with planted rare classes, using the small encoder shipped in the package, and prints,
for the paper's pre-filter and for ``--keep-artifacts``, which planted classes the clusters
recovered, with purity and recall per class.

Layout of ``demo_run/``:

* ``survey/``: the synthetic survey (``catalog.parquet``, ``images/``);
* ``reps.parquet``: its embedding (representation + predicted vote fractions + ``true_class``);
* ``search/``: the run directory of the search with the paper's pre-filter (``clusters.parquet``,
  ``summary.json`` with the metrics, ``report/index.html``);
* ``search_artifacts/``: the same search with ``--keep-artifacts`` (predicted artifacts are
  searched too, so the planted artifact classes can be found);
* ``search/labels.parquet``: the labels of the guided round (a simulated person, see below);
* ``guided_next.csv``: the galaxies the guided search would show next;
* ``summary.json``: the demo's own summary: settings, counts, per-class scores, timings.

The demo ends with a guided round (:mod:`raregal.guided`) on a planted class the clustering
cannot find (``guided_class``): a simulated person starts from 3 of its members and labels each
batch the guided search shows by the planted truth, writing the labels where the explorer keeps
them; the demo prints how many members each batch found.

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

from raregal.atomic import write_json
from raregal.timing import StageTimer, peak_rss_mib

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
    workers: int | None = None
    search_extra: dict = field(default_factory=dict)
    #: The class of the guided round: shells and streams, which the paper's pre-filter removes
    #: (smooth hosts), so no clustering of the kept galaxies can find them; the guided search
    #: ranks every galaxy. Start members, rounds and batch: a person's first few minutes.
    guided_class: str = "shells_streams"
    guided_start: int = 3
    guided_rounds: int = 5
    guided_batch: int = 10


#: The two searches the demo runs: the paper's pre-filter (smooth, edge-on and artifacts dropped)
#: and ``--keep-artifacts`` (artifacts searched too), and their run directories.
MODES = (("paper", False), ("keep_artifacts", True))
RUN_DIRS = {"paper": "search", "keep_artifacts": "search_artifacts"}


def passes_filter(n_kept: int, n_true: int, min_recall: float = 0.5) -> bool:
    """Whether a planted class can still be found after the pre-filter: it kept at least the
    fraction of its galaxies (``min_recall``) a recovery needs."""
    return bool(n_true and n_kept / n_true >= min_recall)


def _mode_summary(search: dict, run_dir: Path, keep_artifacts: bool) -> dict:
    """One search's part of the demo summary; per class also how many of its galaxies the
    pre-filter kept, and whether that is enough (>= the recall a recovery needs) to be found."""
    from raregal.runs.model import read_run

    metrics = search.get("metrics") or {}
    rows = read_run(run_dir).clusters
    kept = rows.groupby("true_class")["kept"].agg(["sum", "size"])
    need = metrics.get("min_recall", 0.5)
    passing = []
    for name, entry in (metrics.get("classes") or {}).items():
        n_kept, n = (int(kept.loc[name, "sum"]), int(kept.loc[name, "size"])) if name in kept.index else (0, 0)
        entry["n_kept"] = n_kept
        entry["passes_filter"] = passes_filter(n_kept, n, need)
        if entry["passes_filter"]:
            passing.append(name)
    report = run_dir / "report" / "index.html"
    return {"keep_artifacts": keep_artifacts, "run_dir": str(run_dir.resolve()),
            "report": str(report.resolve()) if report.exists() else None,
            "counts": search.get("counts", {}), "n_clusters": search.get("n_clusters"),
            "n_recovered": metrics.get("n_recovered"), "n_classes": metrics.get("n_classes"),
            "passing_filter": sorted(passing),
            "n_recovered_passing": sum(bool(metrics["classes"][c]["recovered"]) for c in passing),
            "metrics": metrics}


def _stage_done(marker: Path, settings: dict) -> bool:
    try:
        return json.loads(marker.read_text()) == settings
    except (OSError, ValueError):
        return False


def run_demo(out_dir: str | os.PathLike, config: DemoConfig | None = None, progress: bool = True) -> dict:
    """Run the demo into ``out_dir``; return (and write to ``out_dir/summary.json``) its summary.

    The summary holds the settings, the pre-filter counts, the number of clusters, per planted
    class its size, best-matching cluster, recall and purity (:func:`raregal.evaluation.recovery.score_clusters`),
    the number of classes recovered, where the report is, and seconds per stage.
    """
    from raregal.inputs.tables import read_catalog
    from raregal.discovery.config import SearchConfig
    from raregal.embedding.local import embed_catalog, load_model
    from raregal.encoder.loading import demo_model_path
    from raregal.views.report import report_after_search
    from raregal.discovery.pipeline import run_search
    from raregal.synth import RARE_CLASSES, make_survey

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

    modes = {}
    for mode, keep in MODES:
        search_config = SearchConfig(n_neighbors=config.n_neighbors, min_samples=config.min_samples,
                                     min_cluster_size=config.min_cluster_size, keep_artifacts=keep,
                                     seed=config.seed, **config.search_extra)
        run_dir = out / RUN_DIRS[mode]
        with timer.stage(f"search_{mode}"):
            search = run_search(reps, run_dir, search_config, overwrite=True)
            if search_config.report:
                report_after_search(run_dir, progress=progress)  # RUN_DIR/report/
        modes[mode] = _mode_summary(search, run_dir, keep)

    with timer.stage("guided"):
        guided = guided_round(reps, out / RUN_DIRS["paper"], config, out / "guided_next.csv")

    paper = modes["paper"]
    summary = {
        "settings": asdict(config),
        "survey": str((out / "survey" / "catalog.parquet").resolve()),
        "representations": str(reps.resolve()),
        "encoder": {"arch": embed_summary.get("arch"), "representation_dim": embed_summary.get("representation_dim"),
                    "input_size": embed_summary.get("input_size"), "images_per_s": embed_summary.get("images_per_s")},
        # the paper's filter at the top level (as before); both modes under "modes"
        "run_dir": paper["run_dir"],
        "report": paper["report"],
        "counts": {**paper["counts"], "skipped_images": embed_summary.get("n_skipped")},
        "n_clusters": paper["n_clusters"],
        "n_recovered": paper["n_recovered"],
        "n_classes": paper["n_classes"],
        "metrics": paper["metrics"],
        "modes": modes,
        "guided": guided,
        "timing": {**timer.as_dict(), "wall_seconds": round(time.perf_counter() - t0, 1),
                   "peak_memory_mib": round(peak_rss_mib(), 1)},
    }
    write_json(out / "summary.json", summary)
    return summary


def guided_round(reps: Path, run_dir: Path, config: DemoConfig, next_csv: Path) -> dict | None:
    """A simulated person's guided search for ``config.guided_class`` over the run's galaxies.

    Starts from ``guided_start`` members drawn with the demo's seed; each round
    :func:`raregal.guided.guide` picks ``guided_batch`` galaxies from the run's ``labels.parquet``
    and the person labels them by the planted truth (:class:`~raregal.guided.LabelStore`, as the
    explorer does). Returns members found per round and the recall (found / members not given),
    or None when the survey has no such class.
    """
    import numpy as np

    from raregal.atomic import atomic_path
    from raregal.guided import LabelStore, guide

    from raregal.inputs.tables import read_table

    truth = read_table(reps, columns=["id_str", "true_class"]).set_index("id_str")["true_class"].astype(str)
    members = truth.index[truth == config.guided_class]
    if len(members) <= config.guided_start:
        return None
    name = config.guided_class.replace("_", " ")
    store = LabelStore(run_dir)
    store.set(name, store.of_class(name)["id_str"] if name in store.classes() else [], None)  # a rerun starts afresh
    start = np.random.default_rng(config.seed).choice(members, config.guided_start, replace=False)
    store.set(name, start, 1, source="demo")
    found = []
    for _ in range(config.guided_rounds):
        shown = guide(run_dir, None, config.guided_batch, class_name=name, seed=config.seed).next["id_str"]
        hit = (truth.reindex(shown) == config.guided_class).to_numpy()
        store.set(name, shown[hit], 1, source="demo (simulated person)")
        store.set(name, shown[~hit], 0, source="demo (simulated person)")
        found.append(int(hit.sum()))
    result = guide(run_dir, None, config.guided_batch, class_name=name, seed=config.seed)
    with atomic_path(next_csv) as tmp:
        result.next.to_csv(tmp, index=False)
    n_other = len(members) - config.guided_start
    return {"class": config.guided_class, "start": config.guided_start, "batch": config.guided_batch,
            "found_per_round": found, "shown": config.guided_rounds * config.guided_batch,
            "found": sum(found), "of": n_other, "recall": round(sum(found) / n_other, 3),
            "labels": str((run_dir / "labels.parquet").resolve()), "next": str(next_csv.resolve())}


def format_guided(guided: dict, clustered: dict | None) -> list[str]:
    """What the demo prints of its guided round."""
    where = ("the pre-filter removed it" if clustered and not clustered.get("passes_filter")
             else "the clustering missed it")
    return [f"== guided search for {guided['class']} ({where}): a simulated person starts from {guided['start']} "
            f"members and labels {guided['batch']} galaxies a round",
            "   members found per round: " + ", ".join(map(str, guided["found_per_round"])),
            f"GUIDED SEARCH FOUND {guided['found']} OF THE {guided['of']} OTHER MEMBERS IN {guided['shown']} LOOKS "
            f"(recall {guided['recall']:.2f}); labels: {guided['labels']}; next to show: {guided['next']}"]


def format_summary(summary: dict) -> str:
    """What the demo prints: for each filter mode, per planted class found or not, recall and
    purity, and the count recovered (of all, and of those the pre-filter lets through); then where to look."""
    from raregal.evaluation.recovery import format_scores

    lines = []
    for mode, entry in summary["modes"].items():
        counts = entry.get("counts", {})
        title = ("paper's pre-filter (smooth, edge-on, artifacts dropped)" if mode == "paper"
                 else "--keep-artifacts (smooth, edge-on dropped; artifacts searched)")
        lines.append(f"== {title}: {counts.get('input')} galaxies, kept {counts.get('kept')}, "
                     f"{entry.get('n_clusters')} clusters")
        if entry.get("metrics"):
            lines.append(format_scores(entry["metrics"]))
        dropped = sorted(set(entry["metrics"].get("classes", {})) - set(entry["passing_filter"]))
        lines.append(f"RECOVERED {entry.get('n_recovered')} OF {entry.get('n_classes')} PLANTED RARE CLASSES "
                     f"({entry['n_recovered_passing']} of the {len(entry['passing_filter'])} the filter lets through"
                     + (f"; removed by the filter: {', '.join(dropped)}" if dropped else "") + ")")
        if entry.get("report"):
            lines.append(f"report: {entry['report']}")
    if summary.get("guided"):
        g = summary["guided"]
        lines += format_guided(g, summary["modes"]["paper"]["metrics"].get("classes", {}).get(g["class"]))
    lines.append(f"in {summary['timing']['wall_seconds']:.0f} s; summary: {Path(summary['representations']).parent / 'summary.json'}")
    return "\n".join(lines)
