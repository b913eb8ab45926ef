"""``raregal guide SOURCE --labels LABELS --batch N --out NEXT.csv``: the next galaxies to show, learnt from labels."""

from __future__ import annotations

from pathlib import Path

#: The first columns of every table `raregal guide` writes: how it recognises its own files.
HEADER = "id_str,rank,score"
#: Parquet metadata key of the --scores-out table (how raregal recognises its own file).
SCORES_KEY = b"raregal"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "guide", help="learn a class from labelled examples and say which galaxies to look at next",
        description="One round of the guided search: learns from your labels (id_str, label 1 = member / 0 = not) "
                    "over the representation of every galaxy of the table (also those the pre-filter removed) and "
                    "writes the next galaxies to show, best first. Label them, add them to LABELS, run again.")
    p.add_argument("source", help="run folder (raregal search output) or representation table")
    p.add_argument("--labels", help="labels table (CSV/Parquet/FITS: id_str, label, optional class); default: the "
                                    "run's labels.parquet, written by `raregal explore`")
    p.add_argument("--class", dest="class_name", metavar="NAME", help="which class, when the labels hold several")
    p.add_argument("--batch", type=int, default=10, help="galaxies to show next (default 10)")
    p.add_argument("--out", required=True, help="CSV to write: id_str, rank, score, ra, dec, file_loc, cluster")
    p.add_argument("--scores-out", help="also write every galaxy's score and label (Parquet)")
    p.add_argument("--seed", type=int, default=0, help="seed (the same labels and seed give the same order)")
    p.add_argument("--learner", choices=("hybrid", "nearest", "linear"), default="hybrid",
                   help="hybrid (default): nearest-neighbour contrast and a logistic regression, their ranks weighed by "
                        "cross-validated AUC; nearest; linear")
    p.add_argument("--acquisition", choices=("greedy", "diverse"), default="greedy",
                   help="greedy (default): most likely members first; diverse: no near-duplicates in a batch")
    p.add_argument("--reps", help="the run's representation table, if it moved since the run")
    p.add_argument("--features", help="representation column(s) (default: the run's)")
    p.set_defaults(func=run, param_flags={"class_name": "--class", "random_state": "--seed", "labels": "--labels",
                                          "batch": "--batch"})


def check_scores_out(path: Path) -> None:
    """Refuse a --scores-out that is a folder, a file raregal guide did not write, or not writable."""
    from raregal.runs.folder import check_output_file

    def ours(p: Path) -> bool:
        try:
            import pyarrow.parquet as pq

            return SCORES_KEY in (pq.read_schema(p).metadata or {})
        except Exception:
            return False

    check_output_file(path, ours=ours, flag="--scores-out", command="raregal guide")


def _check_distinct(out: Path, args) -> None:
    """Refuse outputs that are an input (the labels being read, the table) or each other."""
    from raregal.errors import InputError

    outputs = [("--out", out)] + ([("--scores-out", Path(args.scores_out))] if args.scores_out else [])
    inputs = [(f, Path(v)) for f, v in (("--labels", args.labels), ("the source", args.source), ("--reps", args.reps))
              if v]
    for flag, path in outputs:
        for other, src in inputs + [o for o in outputs if o[0] != flag]:
            if path.resolve() == src.resolve():
                raise InputError(f"{flag} {path}: is also {other}; raregal never writes over what it reads or "
                                 "writes two tables to one file. Give another name")


def run(args) -> int:
    import pyarrow as pa

    from raregal.atomic import atomic_path, write_parquet
    from raregal.guided import guide
    from raregal.guided.estimator import check_batch
    from raregal.timing import StageTimer
    from raregal.cli.similar import check_out

    check_batch(args.batch)
    out = Path(args.out)
    _check_distinct(out, args)
    check_out(out, gallery=False, header=HEADER, command="raregal guide")
    if args.scores_out:
        check_scores_out(Path(args.scores_out))
    timer = StageTimer(echo=False)
    with timer.stage("guide"):
        result = guide(args.source, args.labels, args.batch, class_name=args.class_name, learner=args.learner,
                       acquisition=args.acquisition, seed=args.seed, reps=args.reps, features=args.features)
    with atomic_path(out) as tmp:
        result.next.to_csv(tmp, index=False)
    est = result.estimator
    name = f" {result.class_name!r}" if result.class_name else ""
    print(f"{len(result.next)} galaxies to show next for the class{name} ({est.n_members_} members and "
          f"{est.n_non_members_} non-members labelled, {len(result.scores):,} galaxies scored) "
          f"in {timer.seconds['guide']:.1f} s:")
    cols = [c for c in ("rank", "id_str", "score", "cluster") if c in result.next.columns]
    print(result.next.head(10).to_string(index=False, columns=cols))
    print(f"table: {out}")
    if args.scores_out:
        table = pa.Table.from_pandas(result.scores, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), SCORES_KEY: b"guide"})
        write_parquet(args.scores_out, table)
        print(f"scores: {args.scores_out}")
    return 0
