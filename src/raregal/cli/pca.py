"""``raregal pca REPS --out DIR``: how many principal components the representation needs."""

from __future__ import annotations

import argparse


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("pca", help="explained-variance analysis of a representation (the case for a bottleneck)",
                       description="Fit PCA to a representation table; write the cumulative explained-variance "
                                   "curve (explained_variance.png) and the components needed for 90/95/99% of the "
                                   "variance (pca.json) to DIR.")
    p.add_argument("reps", help="representation table (Parquet file or folder, CSV, FITS, .npy, .npz)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--features", help="list column, or column prefix, holding the representation (default feat_*)")
    p.add_argument("--max-rows", type=int, help="fit on a random subset of this many rows")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset")
    p.set_defaults(func=run, param_flags={"out_dir": "--out"})
    return p


def run(args) -> int:
    from raregal.embedding.pca import pca_report

    result = pca_report(args.reps, args.out, features=args.features, max_rows=args.max_rows, seed=args.seed)
    parts = ", ".join(f"{float(t):.0%}: {k}" for t, k in result["components_for"].items())
    print(f"{result['dim']}-d representation of {result['n_rows']} galaxies; components needed: {parts}. "
          f"Results in {args.out}/")
    return 0
