"""``raregal evaluate REPS --labels COLUMN [--k 10]``: how well a representation keeps labelled classes together."""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="benchmark an encoder on labelled galaxies: kNN purity and 'similar' recall per class",
        description="Per class of a label column: kNN@k purity (fraction of each galaxy's k nearest "
                    "neighbours with its label) and the recall of held-back members by `raregal similar`; "
                    "the same for a raw-pixel baseline (PCA of 32x32 images) when the table or catalog "
                    "gives file_loc; with --run, the run's recovery scores. Prints a table; --out writes JSON.")
    p.add_argument("reps", help="representation table (Parquet file or folder, CSV, FITS, .npy, .npz)")
    p.add_argument("--labels", required=True, metavar="COLUMN",
                   help="label column, in REPS or in the --catalog (e.g. true_class)")
    p.add_argument("-k", "--k", dest="k", type=int, default=10, help="neighbours of the kNN purity (default 10)")
    p.add_argument("--catalog", help="image catalog joined on id_str: labels REPS lacks, and file_loc")
    p.add_argument("--features", help="list column, or column prefix, holding the representation (default feat_*)")
    p.add_argument("--metric", choices=("euclidean", "cosine", "correlation"), default=None,
                   help="distance in representation space (default: the --run's metric, else euclidean)")
    p.add_argument("--background", metavar="LABEL",
                   help="the ordinary class: reported, not averaged, no recall (default: the most common label)")
    p.add_argument("--run", metavar="RUN_DIR",
                   help="a `raregal search` run: also score its clusters against the labels")
    p.add_argument("--queries", type=int, default=100, metavar="N",
                   help="query galaxies per class for the held-back recall: half the class, at most N (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the query/held-back split (default 0)")
    p.add_argument("--no-pixels", action="store_true", help="skip the raw-pixel baseline")
    p.add_argument("--workers", type=int, default=None,
                   help="image-decoding processes for the pixel baseline (default: half the cores, <= 4)")
    p.add_argument("--index", choices=("auto", "exact", "flat", "ivf"), default="auto",
                   help="neighbour index, as for `raregal similar` (default auto)")
    p.add_argument("--out", metavar="FILE.json", help="also write the numbers as JSON")
    p.set_defaults(func=run)


def _check_out(out: str | None) -> Path | None:
    """The --out JSON file, checked before the work: new, or a JSON file (the numbers of an earlier run)."""
    from raregal.runs.folder import check_output_file

    if out is None:
        return None
    return check_output_file(out, ours=lambda p: p.suffix.lower() == ".json", command="raregal evaluate")


def run(args) -> int:
    from raregal.atomic import write_json
    from raregal.evaluation.encoders import evaluate, format_evaluation

    out = _check_out(args.out)  # before the work, not after
    result = evaluate(args.reps, args.labels, args.k, catalog=args.catalog, features=args.features,
                      metric=args.metric, background=args.background, run=args.run, pixels=not args.no_pixels,
                      max_queries=args.queries, seed=args.seed, index=args.index, workers=args.workers)
    print(format_evaluation(result))
    if out is not None:
        write_json(out, result)
        print(f"json: {out}")
    return 0
