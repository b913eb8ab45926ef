"""``raregal explore RUN_DIR``: the interactive map of a run in the browser."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "explore", help="browse a run interactively: map, galleries, lasso export, more like this, labelling",
        description="Serve an interactive map of a run directory on this machine (offline; Bokeh). "
                    "Hover for thumbnails, click a galaxy for its nearest neighbours, a cluster for its "
                    "gallery, lasso-select galaxies and export them as CSV. Label galaxies and clusters as "
                    "members (or not) of named classes: labels are saved at once in RUN_DIR/labels.parquet, "
                    "and the Guided tab shows the next galaxies to label and exports the ranked candidates "
                    "(CSV, FITS, SAMP).")
    p.add_argument("run_dir", help="run directory written by `raregal search`")
    p.add_argument("--catalog", help="catalog joined on id_str: image paths (file_loc) and/or sky positions "
                                     "(ra, dec in degrees) the run lacks")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for all, "
                        "then name the address others use with --allow-origin)")
    # --port and --max-points are checked by serve(), before the run is loaded, so that a bad value
    # is one line naming the flag (argparse's type=int would print the usage and skip that check)
    p.add_argument("--port", default=5006, help="port (default 5006; 0 = pick a free one)")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    p.add_argument("--max-points", default=20000,
                   help="most markers sent to the browser at once; more galaxies in view are drawn as a "
                        "density image (default 20000)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="HOST[:PORT]",
                   help="another name the page is reached by (e.g. a tunnel's host:port; port 80 when "
                        "left out); requests naming any other host are refused; repeatable")
    p.add_argument("--sky-layer", default="ls-dr10",
                   help="Legacy Surveys viewer layer the galaxy panel's sky link opens (default ls-dr10)")
    p.set_defaults(func=run)


def run(args) -> int:
    from raregal.views.explore import serve

    serve(args.run_dir, host=args.host, port=args.port, catalog=args.catalog,
          open_browser=not args.no_browser, max_points=args.max_points, allow_origin=args.allow_origin,
          sky_layer=args.sky_layer)
    return 0
