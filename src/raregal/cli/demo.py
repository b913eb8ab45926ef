"""``raregal demo --out demo_run``: the whole method on a fresh synthetic survey, with the shipped encoder."""

from __future__ import annotations

import argparse


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="run synth -> embed (demo encoder) -> search -> report end to end",
                       description="Render a synthetic survey with planted rare classes, embed it with the encoder "
                                   "shipped in raregal, pre-filter on its predicted morphology, search with UMAP + "
                                   "HDBSCAN (parameters scaled to the sample) twice, with the paper's filter and with "
                                   "--keep-artifacts, build the reports, and print which planted classes each "
                                   "recovered. A rerun resumes.")
    p.add_argument("--out", default="demo_run", help="output folder (default demo_run)")
    p.add_argument("--n-galaxies", type=int, default=None, help="survey size (default 3000)")
    p.add_argument("--seed", type=int, default=None,
                   help="survey and search seed (default 1; the demo encoder was trained on seed 0)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from raregal.demo import DemoConfig, format_summary, run_demo

    config = DemoConfig()
    for key in ("n_galaxies", "seed", "workers"):
        if getattr(args, key) is not None:
            setattr(config, key, getattr(args, key))
    summary = run_demo(args.out, config)
    print(format_summary(summary))
    return 0
