"""``raregal synth --n-galaxies N --out DIR --seed S``: a synthetic survey with planted rare classes."""

from __future__ import annotations

import argparse


def _fraction(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=FRACTION (e.g. ring=0.005), got {text!r}") from None


def register(sub) -> argparse.ArgumentParser:
    from raregal.synth.bands import PIXEL_SCALE
    from raregal.synth.classes import DEFAULT_FRACTIONS, RARE_CLASSES

    p = sub.add_parser(
        "synth", help="render a synthetic DESI-like survey with planted rare classes (GalSim)",
        description="Render g, r, z colour cutouts of a seeded synthetic galaxy survey with GalSim, the DESI Legacy "
                    "Surveys' way, with planted rare galaxy and artifact classes. Writes DIR/images/, "
                    "DIR/catalog.parquet (id_str, file_loc relative to DIR, true_class, generating parameters, "
                    "Galaxy Zoo DESI vote counts) and DIR/synth_config.json. Same seed, same pixels; an "
                    "interrupted run resumes.",
        epilog=f"rare classes (default fraction {next(iter(DEFAULT_FRACTIONS.values())):g} each): "
               + ", ".join(RARE_CLASSES))
    p.add_argument("--n-galaxies", type=int, required=True, help="number of galaxies")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", type=int, default=64, help="cutout width in pixels (default 64)")
    p.add_argument("--pixel-scale", type=float, default=PIXEL_SCALE,
                   help=f"arcsec per pixel (default {PIXEL_SCALE:g}: Legacy Surveys pixels binned 2x2)")
    p.add_argument("--format", default="png", choices=["png", "jpg"], help="image format (default png)")
    p.add_argument("--workers", type=int, help="worker processes (default: all available cores)")
    p.add_argument("--preview", action="store_true", help="also write DIR/preview.png with examples of every class")
    p.add_argument("--class-fraction", type=_fraction, action="append", default=[], metavar="NAME=F",
                   help="share of the survey of one rare class (repeatable; 0 leaves it out)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run, param_flags={"out_dir": "--out"})
    return p


def run(args) -> int:
    from raregal.synth import CLASSES, make_survey

    catalog = make_survey(args.n_galaxies, args.out, seed=args.seed, size=args.size, fmt=args.format,
                          class_fractions=dict(args.class_fraction), n_workers=args.workers,
                          preview=args.preview, progress=not args.no_progress, pixel_scale=args.pixel_scale)
    counts = catalog["true_class"].value_counts().reindex(CLASSES).dropna().astype(int)
    width = max(len(c) for c in counts.index)
    print(f"{len(catalog)} galaxies in {args.out}/: catalog.parquet, images/"
          + (", preview.png" if args.preview else ""))
    for name, n in counts.items():
        print(f"  {name:<{width}}  {n:6d}  ({100 * n / len(catalog):.2f}%)")
    return 0
