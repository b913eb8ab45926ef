"""Seconds and peak memory of each stage of the search, each stage in its own process, at 1M+ rows.

The search keeps its finished stages (:mod:`raregal.discovery.stages`), so each stage can run in
a fresh process that resumes from the stages before it and stops after its own: its peak RSS is
then the stage's own (with what it loads), not the running maximum of one long process. The table
(N x 128 float32, planted groups of 0.1-1% in a low-rank bulk) is written once to a memory-mapped
``.npy`` in chunks, so making it costs no memory either.

    python benchmarks/scale_stages.py --rows 1000000 [--rows 2000000 ...] [--out FILE.json]

Results: one JSON per run (rewritten after every stage, so an interrupted benchmark keeps its
finished rows) and a Markdown table beside it; the growth exponent of each stage between sizes
(time ~ N^a, memory ~ N^b) when more than one size is given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STAGES = ("knn", "umap5", "umap2", "hdbscan")
PAPER = dict(n_neighbors=50, n_components=5, min_samples=300, min_cluster_size=10)
GROUPS = (0.001, 0.002, 0.005, 0.01)


def make_table(path: Path, n: int, dim: int = 128, seed: int = 0, chunk: int = 250_000) -> Path:
    """N x dim float32 rows: a low-rank bulk plus tight planted groups (rows 0.. of each group, then bulk)."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((8, dim)).astype(np.float32)
    centres = [rng.standard_normal(8).astype(np.float32) * 3 for _ in GROUPS]
    sizes = [max(5, int(f * n)) for f in GROUPS]
    out = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        latent = rng.standard_normal((stop - start, 8)).astype(np.float32)
        row = np.arange(start, stop)
        edge = 0
        for centre, size in zip(centres, sizes):
            inside = (row >= edge) & (row < edge + size)
            latent[inside] = centre + 0.12 * rng.standard_normal((int(inside.sum()), 8)).astype(np.float32)
            edge += size
        out[start:stop] = latent @ basis + 0.02 * rng.standard_normal((stop - start, dim)).astype(np.float32)
    out.flush()
    del out
    os.replace(path.with_suffix(".tmp.npy"), path)
    return path


def child(table: str, stages_dir: str, stop: str) -> None:
    """Resume the search from ``stages_dir`` and exit after ``stop`` is kept; print seconds and peak MiB."""
    import resource

    import raregal.discovery.estimator as estimator
    from raregal.discovery.stages import staged

    def stop_after(store, stage, compute):
        t0 = time.perf_counter()
        out = staged(store, stage, compute)
        if stage == stop:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            redone = [s for s in store.computed if s != stage]  # earlier stages this process had to compute
            print(json.dumps({"stage": stage, "seconds": time.perf_counter() - t0, "peak_mib": peak,
                              "resumed": stage in store.resumed, "also_computed": redone}), flush=True)
            sys.exit(0)
        return out

    estimator.staged = stop_after
    X = np.load(table, mmap_mode="r")
    estimator.RareClassSearch(**PAPER, layout="deterministic", stages_dir=stages_dir).fit(np.asarray(X))


def child_probe(table: str, stages_dir: str, epochs: str) -> None:
    """The 5-D layout stage up to its first ``epochs`` epochs: its peak memory (the optimiser holds all
    it will hold from the first epoch on), its set-up seconds and seconds per epoch; print them, exit."""
    import resource

    import raregal.discovery.deterministic_umap as du
    import raregal.discovery.estimator as estimator

    t_start, kernel, optimize, times, info = time.perf_counter(), du._epoch, du.optimize_layout, [], {}

    def timed_epoch(*args):
        t0 = time.perf_counter()
        kernel(*args)
        times.append(time.perf_counter() - t0)
        if len(times) >= int(epochs):
            per_epoch = float(np.mean(times[1:] if len(times) > 1 else times))
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(json.dumps({"stage": "umap5_probe", "setup_seconds": info["setup"], "epoch_seconds": per_epoch,
                              "epochs_run": len(times), "n_epochs": info["n_epochs"], "edges": info["edges"],
                              "seconds": info["setup"] + per_epoch * info["n_epochs"], "peak_mib": peak,
                              "estimated": True}), flush=True)
            sys.exit(0)

    def probed_optimize(init, indptr, tail, eps, n_epochs, *args, **kw):
        info.update(setup=time.perf_counter() - t_start, n_epochs=int(n_epochs), edges=int(len(tail)))
        return optimize(init, indptr, tail, eps, n_epochs, *args, **kw)

    du._epoch, du.optimize_layout = timed_epoch, probed_optimize
    X = np.load(table, mmap_mode="r")
    estimator.RareClassSearch(**PAPER, layout="deterministic", stages_dir=stages_dir).fit(np.asarray(X))


def run_probe(n: int, work: Path, results: dict, out: Path, epochs: int) -> None:
    """The k-NN graph stage whole, then :func:`child_probe` of the 5-D layout (sizes too long to run whole)."""
    table, stages_dir = make_table(work / f"scale_{n}.npy", n), work / f"stages_{n}"
    run_stages(n, {"knn": ["--child", str(table), str(stages_dir), "knn"],
                   "umap5_probe": ["--probe-child", str(table), str(stages_dir), str(epochs)]}, results, out)


def run_size(n: int, work: Path, results: dict, out: Path) -> None:
    table, stages_dir = make_table(work / f"scale_{n}.npy", n), work / f"stages_{n}"
    run_stages(n, {stage: ["--child", str(table), str(stages_dir), stage] for stage in STAGES}, results, out)


def run_stages(n: int, argvs: dict, results: dict, out: Path) -> None:
    """Each stage of ``argvs`` (stage -> this script's child arguments) not yet in ``results``, in its own process."""
    row = results.setdefault(str(n), {})
    for stage, argv in argvs.items():
        if stage in row:
            continue
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"{stage} at {n:,} failed:\n{proc.stderr[-3000:]}")
        row[stage] = {**json.loads(lines[-1]), "process_seconds": time.perf_counter() - t0}
        print(f"{n:>10,} {stage:<12} {row[stage]['seconds']:8.1f} s   peak {row[stage]['peak_mib']:8.0f} MiB", flush=True)
        write(results, out)


def exponents(results: dict) -> dict:
    sizes = sorted(int(n) for n in results if all(s in results[n] for s in STAGES))
    if len(sizes) < 2:
        return {}
    a, b = sizes[0], sizes[-1]
    ratio = math.log(b / a)
    return {s: {"time": round(math.log(results[str(b)][s]["seconds"] / results[str(a)][s]["seconds"]) / ratio, 2),
                "memory": round(math.log(results[str(b)][s]["peak_mib"] / results[str(a)][s]["peak_mib"]) / ratio, 2)}
            for s in STAGES}


def write(results: dict, out: Path) -> None:
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "date": time.strftime("%Y-%m-%d"), "parameters": {**PAPER, "layout": "deterministic", "dim": 128}}
    out.write_text(json.dumps({"meta": meta, "sizes": results, "exponents": exponents(results)}, indent=1))
    lines = [f"Machine: {meta['machine']}; {meta['date']}; each stage in its own process (its own peak RSS).", "",
             "| N | stage | seconds | peak MiB |", "|---:|---|---:|---:|"]
    for n, row in sorted(results.items(), key=lambda kv: int(kv[0])):
        for s in (*STAGES, "umap5_probe"):
            if s in row:
                label = s if s != "umap5_probe" else f"umap5, first {row[s]['epochs_run']} epochs (seconds estimated)"
                lines.append(f"| {int(n):,} | {label} | {row[s]['seconds']:.0f} | {row[s]['peak_mib']:.0f} |")
    for s, e in exponents(results).items():
        lines.append(f"\n{s}: time ~ N^{e['time']}, memory ~ N^{e['memory']}")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--probe-child":
        child_probe(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--work", default="/tmp/raregal_scale", help="where the tables and stages go (large)")
    ap.add_argument("--out", default=str(HERE / "results" / "scale_stages.json"))
    ap.add_argument("--probe-layout", type=int, default=0, metavar="EPOCHS",
                    help="run the k-NN graph whole and the 5-D layout for EPOCHS epochs only: its peak memory "
                         "and an estimate of its time (for sizes too long to run whole)")
    args = ap.parse_args()
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text())["sizes"] if out.exists() else {}
    for n in args.rows:
        if args.probe_layout:
            run_probe(n, work, results, out, args.probe_layout)
        else:
            run_size(n, work, results, out)
    print(f"results in {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
