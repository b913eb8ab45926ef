"""``raregal search REPS --out RUN_DIR``: pre-filter, UMAP and HDBSCAN leaf clusters."""

from __future__ import annotations

import argparse

_FLAGS = [  # (flag, config key, type, help)
    ("--n-neighbors", "n_neighbors", int, "UMAP neighbours (paper: 50)"),
    ("--n-components", "n_components", int, "UMAP dimensions that are clustered (paper: 5)"),
    ("--min-samples", "min_samples", int, "HDBSCAN min_samples (paper: 300; small samples need less)"),
    ("--min-cluster-size", "min_cluster_size", int, "HDBSCAN min_cluster_size (paper: 10)"),
    ("--seed", "seed", int, "seed of every stochastic step (default 0)"),
    ("--smooth-cut", "smooth_cut", float, "drop predicted smooth fraction >= this (0.5)"),
    ("--edge-on-cut", "edge_on_cut", float, "drop predicted edge-on fraction >= this (0.3)"),
    ("--artifact-cut", "artifact_cut", float, "drop predicted artifact fraction >= this (0.3)"),
    ("--keep-disturbed", "keep_disturbed", float, "also keep smooth galaxies whose predicted minor + major "
     "disturbance + merger fractions reach this (e.g. 0.3: shells, streams; off by default, as in the paper)"),
    ("--campaign", "campaign", str, "Galaxy Zoo campaign whose predicted smooth / edge-on / artifact fractions "
     "the pre-filter reads (dr12, dr5, dr8, gz2; default: GZ DESI's columns, else the newest in the table)"),
    ("--features", "features", str, "list column, or column prefix, holding the representation"),
    ("--metric", "metric", str, "distance in representation space: euclidean (default), cosine, correlation or "
     "manhattan (manhattan: umap-learn's layout, which --layout auto picks for it)"),
    ("--cluster-selection", "cluster_selection_method", str, "leaf (paper) or eom"),
    ("--umap-init", "umap_init", str, "pca (default: fast at any N), spectral (umap-learn default, the paper) or random"),
    ("--umap-epochs", "umap_n_epochs", int, "UMAP optimisation epochs (default: umap-learn's)"),
    ("--backend", "hdbscan_backend", str, "fast_hdbscan (default), hdbscan or cuml"),
    ("--layout", "layout", str, "auto (default: umap-learn below 8,192 galaxies, deterministic above; both the same at any thread count), deterministic (a thread-independent "
     "k-NN graph and a parallel layout: the same seed gives the same clusters at any NUMBA_NUM_THREADS) or "
     "umap-learn (the paper's optimiser; one thread with a seed)"),
    ("--device", "device", str, "cpu (default) or cuda: UMAP and HDBSCAN on the GPU with cuML (raregal[gpu])"),
]
_SWITCHES = [  # (flag, config key, value, help)
    ("--keep-artifacts", "keep_artifacts", True, "do not drop predicted artifacts (search them)"),
    ("--drop-invalid", "drop_invalid", True, "drop rows with NaN/inf features instead of failing"),
    ("--no-2d", "map_2d", False, "skip the 2-D UMAP map"),
    ("--no-report", "report", False, "do not build the HTML report"),
]


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("search", help="find rare classes in a representation table",
                       description="Pre-filter on predicted morphology, reduce with UMAP, cluster with HDBSCAN "
                                   "(leaf clusters) and write a run directory.")
    p.add_argument("reps", help="representation table: Parquet (file or folder), CSV, FITS, .npy or .npz")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier raregal run in --out (its own files only; other files are never touched)")
    p.add_argument("--config", help="TOML file of parameters (e.g. a previous run's config.toml); flags win")
    for flag, key, typ, text in _FLAGS:
        p.add_argument(flag, dest=key, type=typ, default=None, help=text)
    for flag, key, value, text in _SWITCHES:
        p.add_argument(flag, dest=key, action="store_const", const=value, default=None, help=text)
    p.add_argument("--stability", dest="stability", type=int, nargs="?", const=5, default=None, metavar="K",
                   help="score each cluster's stability over K extra UMAP+HDBSCAN seeds (K default 5; "
                        "off unless given)")
    p.add_argument("--dask", default=None, metavar="WHERE",
                   help="search on a Dask cluster: 'local' (a LocalCluster on this machine), a scheduler address "
                        "(tcp://host:8786) or a TOML file with a [slurm] table (dask-jobqueue); reads a Parquet table")
    p.add_argument("--dask-workers", type=int, default=None, help="worker processes of --dask local (default 2)")
    p.add_argument("--dask-sample", type=int, default=None,
                   help="with --dask: galaxies the layout is fitted on, drawn so rare tight groups stay whole; "
                        "the rest are placed (default 1,000,000)")
    p.set_defaults(func=run, param_flags={"out_dir": "--out"})
    return p


def overrides(args) -> dict:
    """The config keys set on the command line (unset flags are None)."""
    keys = [key for _, key, _, _ in _FLAGS] + [key for _, key, _, _ in _SWITCHES] + ["stability"]
    return {k: getattr(args, k) for k in keys if getattr(args, k) is not None}


def run(args) -> int:
    from raregal.discovery.config import SearchConfig, config_from_dict, load_config
    from raregal.discovery.pipeline import run_search

    base = load_config(args.config) if args.config else SearchConfig()
    config = config_from_dict(overrides(args), base=base)
    summary = run_search(args.reps, args.out, config, overwrite=args.overwrite, dask=args.dask,
                         dask_workers=args.dask_workers, dask_sample=args.dask_sample)
    if config.report:  # the report is the CLI's, not the search's (raregal.discovery.pipeline builds none)
        from raregal.views.report import report_after_search

        report_after_search(args.out)
    placed = (summary.get("distributed") or {}).get("n_placed")
    if placed:
        print(f"Dask: the layout was fitted on {summary['distributed']['n_fitted']:,} galaxies; {placed:,} were placed.")
    print(f"{summary['n_clusters']} clusters; {summary['n_clustered']} of {summary['counts']['kept']} kept "
          f"galaxies clustered ({100 * summary['fraction_clustered']:.1f}%). Results in {args.out}/")
    metrics = summary.get("metrics")
    if metrics:
        from raregal.evaluation.recovery import format_scores

        print(format_scores(metrics))
    return 0
