"""``raregal similar RUN_DIR (--cluster C | --ids ID [ID ...]) -k N``: find more galaxies like these."""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "similar", help="rank the whole catalog by similarity to a cluster or to chosen galaxies",
        description="Nearest neighbours in representation space of a run's cluster (--cluster) or of any "
                    "galaxies (--ids), over every galaxy of the run's input table (also those the "
                    "pre-filter dropped). Writes a CSV (id_str, rank, distance, ...) and a PNG gallery.")
    p.add_argument("source", help="run directory (raregal search output), or a representation table with --ids")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--cluster", type=int, help="use this cluster's members as the query")
    which.add_argument("--ids", nargs="+", metavar="ID", help="use these galaxies (id_str) as the query")
    p.add_argument("-k", type=int, default=50, help="number of candidates (default 50)")
    p.add_argument("--out", help="CSV to write (default RUN_DIR/similar/cluster_C.csv or ids_<first id>.csv)")
    p.add_argument("--reps", help="the run's representation table, if it moved since the run")
    p.add_argument("--features", help="representation column(s) (default: the run's)")
    p.add_argument("--query", choices=("nearest", "centroid"), default="nearest",
                   help="distance to the nearest query galaxy (default) or to their centroid")
    p.add_argument("--index", choices=("auto", "exact", "flat", "ivf"), default="auto",
                   help="exact, ivf (the search's inverted file, approximate; flat: the same as exact); auto: ivf "
                        "for big queries over catalogs of 200k galaxies or more, else exact")
    p.add_argument("--nprobe", type=int, default=32, help="inverted-file cells searched (more: slower, better)")
    p.add_argument("--no-gallery", action="store_true", help="skip the PNG gallery")
    p.add_argument("--samp", action="store_true",
                   help="also write the table as VOTable (.vot beside the CSV) and send it over SAMP to TOPCAT, "
                        "Aladin, ... (a missing hub is a warning: the CSV is written all the same)")
    p.set_defaults(func=run)


def _default_out(args) -> Path:
    from raregal.atomic import safe_file_name
    from raregal.errors import InputError
    from raregal.runs.model import is_run_dir

    if not is_run_dir(args.source):
        from raregal.similarity import _check_not_a_broken_run

        _check_not_a_broken_run(args.source)  # a run that lost clusters.parquet says so
        raise InputError("--out is needed when the source is a table, not a run directory")
    if args.cluster is not None:
        name = f"cluster_{args.cluster}"
    else:
        name = "ids_" + safe_file_name(args.ids[0]) + (f"_and_{len(args.ids) - 1}" if len(args.ids) > 1 else "")
    return Path(args.source) / "similar" / f"{name}.csv"


#: The first columns of every table `raregal similar` writes: how it recognises its own files.
_HEADER = "id_str,rank,distance"


def check_out(out: Path, gallery: bool, samp: bool = False, header: str = _HEADER,
              command: str = "raregal similar", flag: str = "--out") -> None:
    """Refuse, before any compute, an output table that raregal may not write (a folder, a user's file:
    one whose first line is not ``header``, the columns ``command`` starts its tables with)."""
    from raregal.runs.folder import check_output_file

    def ours(path: Path) -> bool:
        with open(path, errors="replace") as f:
            return f.readline().startswith(header)

    companions = [(out.with_suffix(".png"), "--no-gallery")] * gallery + [(out.with_suffix(".vot"), "leave out --samp")] * samp
    check_output_file(out, ours=ours, flag=flag, command=command, companions=tuple(companions))


def run(args) -> int:
    import logging

    from raregal.atomic import atomic_path
    from raregal.timing import StageTimer
    from raregal.similarity import similar

    log = logging.getLogger("raregal")
    out = Path(args.out) if args.out else _default_out(args)
    check_out(out, gallery=not args.no_gallery, samp=args.samp)
    timer = StageTimer(echo=False)
    with timer.stage("similar"):
        result = similar(args.source, cluster=args.cluster, ids=args.ids, k=args.k, reps=args.reps,
                         features=args.features, query=args.query, index=args.index, nprobe=args.nprobe)
    with atomic_path(out) as tmp:
        result.to_csv(tmp, index=False)
    print(f"{len(result)} galaxies most like {len(result.attrs['query_ids'])} query galaxies "
          f"in {timer.seconds['similar']:.1f} s:")
    print(result.head(10).to_string(index=False, columns=[c for c in ("rank", "id_str", "distance", "cluster")
                                                          if c in result.columns]))
    print(f"table: {out}")
    if not args.no_gallery:
        from raregal.views.report.similar_gallery import write_similar_gallery

        png, bad = write_similar_gallery(result, out.with_suffix(".png"))
        if bad:
            log.warning("gallery: %d image(s) could not be read and show as placeholders", bad)
        print(f"gallery: {png}")
    if args.samp:
        _send(result, out, log)
    return 0


def _send(result, out: Path, log) -> None:
    """Write ``out``.vot and broadcast it over SAMP; without a hub, a warning (the CSV is written already)."""
    from raregal.views.samp import SampUnavailable, send_frame

    name = f"raregal similar {out.stem}"
    try:
        vot, took = send_frame(result, out.with_suffix(".vot"), name)
    except SampUnavailable as err:
        log.warning("similar --samp: %s; the table is in %s (open it in TOPCAT yourself)", err,
                    out.with_suffix(".vot") if out.with_suffix(".vot").exists() else out)
        return
    print(f"samp: sent {vot} to {', '.join(took)}")
