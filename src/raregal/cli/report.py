"""``raregal report RUN_DIR``: a self-contained HTML report of a run's clusters."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="write RUN_DIR/report/: map, cluster galleries, montage, condensed tree, downloads",
        description="Write a self-contained HTML report (index.html + images, viewable offline) of a run "
                    "directory: counts per stage, the 2-D map, a gallery and predicted morphology per "
                    "cluster, a montage of example clusters, the condensed tree, CSV/FITS downloads.")
    p.add_argument("run_dir", help="run directory written by `raregal search`")
    p.add_argument("--catalog", help="catalog joined on id_str: its file_loc gives the images (default: the "
                                     "run's own), its ra/dec (degrees) the sky positions when the run has none")
    p.add_argument("--out", help="report folder (default RUN_DIR/report)")
    p.add_argument("--sky-layer", default="ls-dr10",
                   help="Legacy Surveys viewer layer the galaxies' sky links open (default ls-dr10; e.g. ls-dr9)")
    p.set_defaults(func=run)


def run(args) -> int:
    from raregal.views.report import build_report

    index = build_report(args.run_dir, catalog=args.catalog, out=args.out, sky_layer=args.sky_layer)
    print(f"raregal report: open {index}")
    return 0
