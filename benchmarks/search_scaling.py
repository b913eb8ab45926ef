"""Seconds and peak memory of the search, raregal vs the paper's stack as plainly used.

For each N (default 20k, 50k, 100k, 200k, 632k) a seeded synthetic table of 128-d
representations with planted groups (0.1-1% each) is searched with the paper's parameters
(UMAP n_neighbors=50, 5-D and 2-D; HDBSCAN min_samples=300, min_cluster_size=10, leaf):

* ``raregal``: :class:`raregal.discovery.estimator.RareClassSearch` with ``layout="umap-learn"`` (the default
  before session 5: one NN-descent graph for both UMAPs, PCA init, the 2-D map started from the
  5-D layout, fast_hdbscan);
* ``raregal-det``: the same with ``layout="deterministic"`` (what the default ``"auto"`` runs above
  8,192 rows: :mod:`raregal.discovery.knn`'s graph and :mod:`raregal.discovery.deterministic_umap`'s parallel
  optimiser: the same bits at any thread count);
* ``paper``: ``umap.UMAP(n_neighbors=50, n_components=5)`` and ``n_components=2`` each fitted
  from scratch, then ``hdbscan.HDBSCAN(min_samples=300, min_cluster_size=10,
  cluster_selection_method="leaf")`` with its defaults.

Each (stack, N) runs in its own process so peak memory (ru_maxrss) is its own. numba's
on-disk cache (NUMBA_CACHE_DIR) is warmed by a first small run, so compilation is not
counted again for every N. Results: ``benchmarks/results/search_scaling.json`` and ``.md``
(rewritten after every run, so a long benchmark leaves its finished rows behind).

``--one-core-each`` runs the stacks of one N at the same time, each pinned to its own CPU core
with every thread pool (numba, OpenMP, BLAS) set to one thread. Both then get exactly the same
resources, and the paper stack's multi-hour run at 632k does not double the benchmark's wall time.

    python benchmarks/search_scaling.py [--sizes 20000 50000] [--stacks raregal raregal-det paper]
        [--seeds 0 1] [--one-core-each]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
GROUPS = (0.001, 0.002, 0.005, 0.01)
PAPER = dict(n_neighbors=50, min_samples=300, min_cluster_size=10)
THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def one(stack: str, n: int, seed: int = 0) -> dict:
    """Run one stack on N rows in this process; return timings, memory and recovery."""
    import numpy as np

    from raregal.evaluation.recovery import score_clusters
    from raregal.evaluation.planted import make_planted
    from raregal.timing import StageTimer, peak_rss_mib, setup_logging

    setup_logging()  # stage times go to stderr as they finish (the parent keeps them in a .log file)
    frame = make_planted(n=n, dim=128, group_fractions=GROUPS, seed=seed)
    X = frame.filter(like="feat_").to_numpy(np.float32)
    truth = frame["true_class"].to_numpy().astype(str)
    del frame
    timer = StageTimer(echo=True)
    t0 = time.perf_counter()
    if stack in ("raregal", "raregal-det"):
        from raregal.discovery.estimator import RareClassSearch

        layout = "deterministic" if stack == "raregal-det" else "umap-learn"
        est = RareClassSearch(**PAPER, random_state=seed, layout=layout, verbose=True).fit(X)
        labels = est.labels_
        timer.seconds.update(est.timings_)
    elif stack == "paper":
        import hdbscan
        import umap

        with timer.stage("umap5"):
            Y = umap.UMAP(n_neighbors=50, n_components=5, random_state=seed).fit_transform(X)
        with timer.stage("umap2"):
            umap.UMAP(n_neighbors=50, n_components=2, random_state=seed).fit_transform(X)
        with timer.stage("hdbscan"):
            labels = hdbscan.HDBSCAN(min_samples=300, min_cluster_size=10,
                                     cluster_selection_method="leaf").fit(Y).labels_
    else:
        raise ValueError(stack)
    wall = time.perf_counter() - t0
    scores = score_clusters(truth, labels)
    return {"stack": stack, "n": n, "seed": seed, "wall_seconds": round(wall, 1),
            "seconds": {k: round(v, 1) for k, v in timer.seconds.items()},
            "peak_memory_mib": round(peak_rss_mib(), 0), "n_clusters": int(labels.max() + 1),
            "fraction_clustered": round(float((labels >= 0).mean()), 4),
            "recovered": scores["n_recovered"], "planted": scores["n_classes"],
            "recovered_classes": sorted(k for k, v in scores["classes"].items() if v["recovered"])}


def machine() -> str:
    import psutil

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.python_version()}")


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"Machine: {meta['machine']}; date {meta['date']}; {meta.get('mode', 'all cores')}.", "",
             "| N | seed | stack | wall s | kNN s | UMAP 5-D s | UMAP 2-D s | HDBSCAN s | peak MiB | clusters | "
             "recovered / planted | raregal ÷ paper |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    walls = {(r["stack"], r["n"], r.get("seed", 0)): r["wall_seconds"] for r in rows}
    for r in rows:
        s = r["seconds"]
        ratio = ""
        paper = ("paper", r["n"], r.get("seed", 0))
        if r["stack"] != "paper" and paper in walls:
            ratio = f"{r['wall_seconds'] / walls[paper]:.2f}"
        lines.append(f"| {r['n']:,} | {r.get('seed', 0)} | {r['stack']} | {r['wall_seconds']:.0f} | {s.get('knn', 0):.0f} | "
                     f"{s.get('umap5', 0):.0f} | {s.get('umap2', 0):.0f} | {s.get('hdbscan', 0):.0f} | "
                     f"{r['peak_memory_mib']:.0f} | {r['n_clusters']} | {r['recovered']} / {r['planted']} | {ratio} |")
    lines.append("")
    lines.append("The paper's stack computes its k-NN graph inside each UMAP (counted in the UMAP columns).")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 50_000, 100_000, 200_000, 632_000])
    parser.add_argument("--stacks", nargs="+", default=["raregal", "paper"])
    parser.add_argument("--out", default=str(RESULTS / "search_scaling"))
    parser.add_argument("--one-core-each", action="store_true",
                        help="run the stacks of each N concurrently, each on its own core with one thread")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="table and search seeds")
    parser.add_argument("--one", nargs=3, metavar=("STACK", "N", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), int(args.one[2]))))
        return 0
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(HERE.parent / ".cache" / "numba"))}
    meta = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "groups": GROUPS, "parameters": PAPER}
    rows = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stack in args.stacks:  # warm numba's disk cache once per stack, uncounted
        subprocess.run([sys.executable, __file__, "--one", stack, "3000", "0"], env=env, capture_output=True)
    n_cores = len(os.sched_getaffinity(0))
    threads = os.environ.get("NUMBA_NUM_THREADS")
    meta["mode"] = ("stacks concurrently, each pinned to its own core, one thread each" if args.one_core_each
                    else f"stacks one after another on {n_cores} core{'s' * (n_cores > 1)}"
                    + (f", {threads} thread(s) each" if threads else ""))
    for n, seed in ((n, seed) for n in args.sizes for seed in args.seeds):
        procs = []
        for k, stack in enumerate(args.stacks):
            cmd = [sys.executable, __file__, "--one", stack, str(n), str(seed)]
            if args.one_core_each:
                cores = sorted(os.sched_getaffinity(0))
                cmd = ["taskset", "-c", str(cores[k % len(cores)])] + cmd
                run_env = {**env, **{v: "1" for v in THREAD_VARS}}
            else:
                run_env = env
            log_path = out.parent / f"{out.name}_{stack}_{n}_{seed}.log"
            with open(log_path, "w") as log_file:  # the child's stage lines, readable while it runs
                proc = subprocess.Popen(cmd, env=run_env, stdout=subprocess.PIPE, stderr=log_file, text=True)
            procs.append((stack, proc, log_path))
            if not args.one_core_each:
                proc.wait()
        for stack, proc, log_path in procs:
            stdout, _ = proc.communicate()
            if proc.returncode:
                print(log_path.read_text()[-2000:], file=sys.stderr)
                continue
            row = json.loads(stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{stack:11s} N={n:>7,} seed {seed}: {row['wall_seconds']:7.1f} s, peak {row['peak_memory_mib']:6.0f} MiB, "
                  f"{row['n_clusters']} clusters, recovered {row['recovered']}/{row['planted']}", flush=True)
            (out.with_suffix(".json")).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
            (out.with_suffix(".md")).write_text(markdown(rows, meta))
    print(f"results in {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
