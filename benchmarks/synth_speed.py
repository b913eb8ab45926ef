"""How fast does ``raregal synth`` render? Galaxies per second and seconds for N galaxies.

    python benchmarks/synth_speed.py [--n-galaxies 10000] [--workers 2] [--size 64] [--out DIR]

Renders a survey into a temporary folder (or ``--out``), then prints one line of JSON with the
wall time, galaxies per second, CPU seconds per galaxy, the machine's core count and its load
average before and after (other work on the machine slows the run; report it with the number).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time

from raregal.synth import make_survey


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-galaxies", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="survey folder (default: a temporary one, deleted afterwards)")
    args = ap.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        t0 = time.perf_counter()
        make_survey(args.n_galaxies, out, seed=args.seed, size=args.size, n_workers=args.workers, progress=True)
        wall = time.perf_counter() - t0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    cpu = children.ru_utime + children.ru_stime + me.ru_utime + me.ru_stime
    print(json.dumps({
        "n_galaxies": args.n_galaxies, "size_px": args.size, "workers": args.workers,
        "wall_seconds": round(wall, 1), "galaxies_per_second": round(args.n_galaxies / wall, 1),
        "cpu_ms_per_galaxy": round(1000 * cpu / args.n_galaxies, 1),
        "cores": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }))


if __name__ == "__main__":
    main()
