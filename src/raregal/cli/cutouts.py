"""``raregal cutouts CATALOG --out DIR``: fetch each galaxy's Legacy Surveys cutout by RA/Dec."""

from __future__ import annotations

import argparse


def register(sub) -> argparse.ArgumentParser:
    from raregal.inputs.cutouts import DEFAULT_SERVICE, FORMATS

    p = sub.add_parser(
        "cutouts", help="fetch each galaxy's cutout from the Legacy Surveys cutout service by ra/dec",
        description="Download a JPEG or FITS (g, r, z) cutout centred on each galaxy's ra/dec (degrees) from the "
                    "DESI Legacy Imaging Surveys' cutout service and write DIR/images/, DIR/catalog.parquet "
                    "(id_str, file_loc, ra, dec and the input's other columns; what `raregal embed` reads) and "
                    "DIR/failed.csv (id_str, ra, dec, reason). Rerun the same command to resume: finished "
                    "cutouts are not fetched again, failures are retried.")
    p.add_argument("catalog", help="table with id_str, ra, dec (degrees): Parquet, CSV or FITS")
    p.add_argument("--out", dest="out_dir", metavar="DIR", required=True,
                   help="output folder (new, empty, or one to resume)")
    p.add_argument("--layer", default="ls-dr10", help="survey layer (default ls-dr10; e.g. ls-dr9)")
    p.add_argument("--pixscale", type=float, default=0.262,
                   help="arcsec per pixel (default 0.262, the native pixel; 0.524 bins 2x2)")
    p.add_argument("--size", type=int, default=256, help="cutout width in pixels (default 256)")
    p.add_argument("--format", dest="fmt", default="jpg", choices=FORMATS,
                   help="jpg (the survey's colour image) or fits (g, r, z cube in nanomaggies) (default jpg)")
    p.add_argument("--workers", type=int, default=8, help="requests in flight at once (default 8)")
    p.add_argument("--service", default=None, metavar="URL_TEMPLATE",
                   help="cutout URL with {ra}, {dec} and optionally {layer}, {pixscale}, {size}, {format}, {bands} "
                        f"placeholders, for a mirror (default {DEFAULT_SERVICE.replace('%', '%%')})")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for an answer (default 60)")
    p.add_argument("--retries", type=int, default=4,
                   help="retries of an answer 5xx/429, a timeout or a broken connection (default 4)")
    p.add_argument("--backoff", type=float, default=1.0,
                   help="seconds before the first retry, doubled for each next one (default 1)")
    p.add_argument("--overwrite", action="store_true",
                   help="discard cutouts fetched into DIR earlier with other settings")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)  # errors name out_dir, fmt: the flags whose dest they are (--out, --format)
    return p


def run(args) -> int:
    from raregal.inputs.cutouts import fetch_cutouts

    s = fetch_cutouts(args.catalog, args.out_dir, layer=args.layer, pixscale=args.pixscale, size=args.size,
                      fmt=args.fmt, workers=args.workers, service=args.service, timeout=args.timeout,
                      retries=args.retries, backoff=args.backoff, overwrite=args.overwrite,
                      progress=not args.no_progress)
    print(f"{s['n_cutouts']} of {s['n_input']} galaxies have a cutout ({s['n_fetched']} fetched now, "
          f"{s['n_already_there']} already there) in {s['seconds']:.1f} s")
    print(f"  images:  {s['images']}")
    print(f"  catalog: {s['catalog']}  (embed it: raregal embed {s['catalog']} --out reps.parquet)")
    if s["n_failed"]:
        print(f"  failed:  {s['n_failed']} galaxies, listed with the reason in {s['failed']} "
              "(run the same command again to retry them)")
    return 0
