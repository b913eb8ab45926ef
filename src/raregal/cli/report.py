"""``raregal report RUN_DIR``: a self-contained HTML report of a run's clusters."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="write RUN_DIR/report/: map, cluster galleries, montage, condensed tree, downloads",
        description="Write a self-contained HTML report (index.html + images, viewable offline) of a run "
                    "directory: counts per stage, the 2-D map, a gallery and predicted morphology per "
                    "cluster, a montage of example clusters, the condensed tree, CSV/FITS downloads.")
    p.add_argument("run_dir", help="run directory written by `raregal search`")
    p.add_argument("--catalog", help="image catalog (id_str, file_loc) giving the images, joined on id_str "
                                     "(default: the run's own file_loc)")
    p.add_argument("--out", help="report folder (default RUN_DIR/report)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..report import build_report

    index = build_report(args.run_dir, catalog=args.catalog, out=args.out)
    print(f"raregal report: open {index}")
    return 0
