"""One guided-search round over the paper's base catalogue size: 8.7M x 128, memory-mapped.

Issue #26 item 4: one round (fit on the labels + choose the next batch) over 8.7M galaxies in
<= 5 s on this machine, with no copy of the table per round. The representation is a float32
``.npy`` file opened with ``np.load(mmap_mode="r")`` (the format ``raregal embed`` output
converts to with one pandas call); the estimator reads it in chunks
(:data:`raregal.guided.learner.CHUNK` rows). A planted class of 300 galaxies sits among
Gaussian noise; the labels are those of a person after 20 rounds (50 members, 150 not).

    python benchmarks/guided_scale.py --rows 8700000 --file /tmp/reps_8p7M.npy \
        --out benchmarks/results/guided_scale.json

The first call writes the file (about 4.5 GB; a minute); later calls reuse it. Times are for a
warm page cache (the file read once before): a person's second round onwards.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from raregal.guided import GuidedSearch  # noqa: E402

D = 128
N_CLASS = 300


def make_file(path: Path, n: int, seed: int = 0, chunk: int = 1_000_000) -> None:
    """Write an (n, D) float32 .npy of unit Gaussians with a tight planted class in the first N_CLASS rows."""
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, D))
    centre = rng.normal(size=D).astype(np.float32) * 1.5
    for start in range(0, n, chunk):
        out[start:start + chunk] = rng.normal(size=(min(chunk, n - start), D)).astype(np.float32)
    out[:N_CLASS] = centre + 0.5 * rng.normal(size=(N_CLASS, D)).astype(np.float32)
    out.flush()
    del out


def labels(n: int, n_members: int, n_non: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.full(n, -1, np.int8)
    y[rng.choice(N_CLASS, n_members, replace=False)] = 1
    y[N_CLASS + rng.choice(n - N_CLASS, n_non, replace=False)] = 0
    return y


def one_round(X, y, learner: str, batch: int = 10) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    rows = GuidedSearch(learner=learner, random_state=0).fit(X, y).next_batch(batch)
    return time.perf_counter() - t0, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=8_700_000)
    ap.add_argument("--file", default="/tmp/reps_8p7M.npy")
    ap.add_argument("--learners", default="hybrid,linear,nearest")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    path = Path(args.file)
    if not path.exists() or np.load(path, mmap_mode="r").shape != (args.rows, D):
        t0 = time.perf_counter()
        make_file(path, args.rows)
        print(f"wrote {path} ({args.rows:,} x {D}) in {time.perf_counter() - t0:.0f} s", flush=True)
    X = np.load(path, mmap_mode="r")
    for s in range(0, len(X), 1_000_000):  # warm the page cache: a person's second round onwards
        X[s:s + 1_000_000].sum()
    result = {"rows": args.rows, "dim": D, "file": str(path), "rounds": {}}
    for case, (m, k) in {"start: 3 members": (3, 0), "after 20 rounds: 50 members, 150 not": (50, 150)}.items():
        y = labels(args.rows, m, k)
        for learner in args.learners.split(","):
            times = []
            for _ in range(args.repeats):
                took, rows = one_round(X, y, learner)
                times.append(round(took, 2))
            hits = int((rows < N_CLASS).sum())
            result["rounds"][f"{learner} / {case}"] = {"seconds": times, "best_s": min(times), "hits_of_10": hits}
            print(f"{learner:8s} {case:40s} {min(times):6.2f} s (runs {times}), {hits}/10 members", flush=True)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(f"peak RSS {result['peak_rss_mib']:.0f} MiB (the table is {args.rows * D * 4 / 2**20:,.0f} MiB on disk)")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
