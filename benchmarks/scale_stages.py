"""Seconds and peak memory of each stage of the search, each stage in its own process, at 1M+ rows.

The search keeps its finished stages (:mod:`raregal.discovery.stages`), so each stage can run in
a fresh process that resumes from the stages before it and stops after its own: its peak RSS is
then the stage's own (with what it loads), not the running maximum of one long process. The table
(N x 128 float32, planted groups of 0.1-1% in a low-rank bulk) is written once to a memory-mapped
``.npy`` in chunks, so making it costs no memory either.

    python benchmarks/scale_stages.py --rows 1000000 [--rows 2000000 ...] [--out FILE.json]

Results: one JSON per run (rewritten after every stage, so an interrupted benchmark keeps its
finished rows) and a Markdown table beside it; each stage's log lines (its progress, the time left)
in ``STAGES_DIR/<stage>.log``; the growth exponent of each stage between sizes
(time ~ N^a, memory ~ N^b) when more than one size is given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from knn_recall import recall  # this folder's script: recall@k against exact neighbours

HERE = Path(__file__).resolve().parent
STAGES = ("knn", "umap5", "umap2", "hdbscan")
#: The order they are run in: HDBSCAN needs only the 5-D layout (its child makes no 2-D map), and
#: its time is the less certain of the two, so it comes first when a long benchmark may be cut short.
RUN_ORDER = ("knn", "umap5", "hdbscan", "umap2")
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
    _log_to(Path(stages_dir) / f"{stop}.log")
    X = np.load(table, mmap_mode="r")
    estimator.RareClassSearch(**PAPER, layout="deterministic", stages_dir=stages_dir,  # HDBSCAN's key has no map_2d
                              map_2d=stop != "hdbscan").fit(np.asarray(X))


def _log_to(path: Path) -> None:
    """raregal's log lines (a stage's progress and time left) into ``path``, stamped (the parent keeps only stdout)."""
    import logging

    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger("raregal")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def child_probe(table: str, stages_dir: str, epochs: str) -> None:
    """The 5-D layout stage up to its first ``epochs`` epochs: its peak memory (the optimiser holds all
    it will hold from the first epoch on) and an estimate of its time; print them, exit.

    An epoch's time is proportional to the edges due in it (each with its negative samples), and
    the first epochs have few: an edge of weight w is first due at epoch 1 / w (w / max), and most
    fuzzy weights are small (15 % of the edges are due in a mean epoch, at 100k and at 8.7M). So
    the estimate is the set-up plus the probed epochs' seconds per due edge times the edges due over
    all the epochs, counted from the schedule (``floor((n_epochs - 1) / epochs_per_sample)`` an
    edge). Not 200 x the mean probed epoch: that was half the true time (at 100k the first 4 epochs
    average 46 % of the mean epoch's due edges)."""
    import raregal.discovery.deterministic_umap as du
    import raregal.discovery.estimator as estimator

    t_start, kernel, optimize, times, due, info = time.perf_counter(), du._epoch, du.optimize_layout, [], [], {}

    def timed_epoch(*args):
        next_s, epoch = args[6], args[8]
        due.append(_due(next_s, epoch))  # counted outside the timed kernel
        t0 = time.perf_counter()
        kernel(*args)
        times.append(time.perf_counter() - t0)
        if len(times) >= int(epochs):
            print(json.dumps(probe_estimate(info, times, due)), flush=True)
            sys.exit(0)

    def probed_optimize(init, indptr, tail, eps, n_epochs, *args, **kw):
        info.update(setup=time.perf_counter() - t_start, n_epochs=int(n_epochs), edges=int(len(tail)),
                    total_due=_total_due(eps, int(n_epochs)))
        return optimize(init, indptr, tail, eps, n_epochs, *args, **kw)

    du._epoch, du.optimize_layout = timed_epoch, probed_optimize
    X = np.load(table, mmap_mode="r")
    estimator.RareClassSearch(**PAPER, layout="deterministic", stages_dir=stages_dir,  # HDBSCAN's key has no map_2d
                              map_2d=stop != "hdbscan").fit(np.asarray(X))


def _due(next_s: np.ndarray, epoch: int, chunk: int = 1 << 20) -> int:
    """Edges due at ``epoch``, counted in chunks (a whole boolean mask would add 1 byte an edge to the peak)."""
    return sum(int(np.count_nonzero(next_s[s:s + chunk] <= epoch)) for s in range(0, len(next_s), chunk))


def _total_due(eps: np.ndarray, n_epochs: int, chunk: int = 1 << 20) -> int:
    """Edge samples over ``n_epochs`` epochs: an edge is due at epochs e, 2e, ... <= n_epochs - 1 (pruned: -1)."""
    total = 0
    for s in range(0, len(eps), chunk):
        e = np.asarray(eps[s:s + chunk], np.float64)
        total += int(np.floor((n_epochs - 1) / e[e > 0]).sum())
    return total


def probe_estimate(info: dict, times: list, due: list) -> dict:
    """The stage's seconds from the probed epochs (epoch 0, the kernels' first call, has no edge due)."""
    per_due = float(np.sum(times[1:]) / max(1, np.sum(due[1:])))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"stage": "umap5_probe", "setup_seconds": info["setup"], "epochs_run": len(times),
            "epoch_seconds": [round(t, 3) for t in times], "due_edges": due, "n_epochs": info["n_epochs"],
            "edges": info["edges"], "total_due": info["total_due"], "ns_per_due_edge": per_due * 1e9,
            "seconds": info["setup"] + per_due * info["total_due"], "peak_mib": peak, "estimated": True}


def run_probe(n: int, work: Path, results: dict, out: Path, epochs: int) -> None:
    """The k-NN graph stage whole, then :func:`child_probe` of the 5-D layout (sizes too long to run whole)."""
    table, stages_dir = make_table(work / f"scale_{n}.npy", n), work / f"stages_{n}"
    run_stages(n, {"knn": ["--child", str(table), str(stages_dir), "knn"],
                   "umap5_probe": ["--probe-child", str(table), str(stages_dir), str(epochs)]}, results, out)


def run_size(n: int, work: Path, results: dict, out: Path) -> None:
    table, stages_dir = make_table(work / f"scale_{n}.npy", n), work / f"stages_{n}"
    run_stages(n, {stage: ["--child", str(table), str(stages_dir), stage] for stage in RUN_ORDER}, results, out)


def graph_recall(n: int, work: Path, results: dict, out: Path, rows: int, probes=(), k: int = PAPER["n_neighbors"]) -> None:
    """Recall@k of the kept k-NN graph of size ``n``: the fraction of each of ``rows`` seeded rows' exact
    k neighbours (computed directly against all ``n`` rows) that the graph lists; then, for each count
    in ``probes``, the recall of the same rows searched in that many of their nearest cells of the
    graph's own inverted file (what the graph would be with ``GRAPH_PROBES`` that count)."""
    from raregal.discovery.knn import exact_knn_of

    X = np.load(work / f"scale_{n}.npy", mmap_mode="r")
    with np.load(work / f"stages_{n}" / "knn.npz") as npz:
        graph = npz["indices"]
    sample = np.sort(np.random.default_rng(0).choice(n, size=min(rows, n), replace=False))
    t0 = time.perf_counter()
    sq = np.einsum("ij,ij->i", X, X, dtype=np.float32)  # X is read in pages, never copied whole
    truth = exact_knn_of(X, sq, sample, k)[0]
    row = results[str(n)]
    row["knn_recall"] = {"rows": len(sample), "recall": recall(graph[sample], truth),
                         "seconds": time.perf_counter() - t0}
    print(f"{n:>10,} k-NN recall@{k} {row['knn_recall']['recall']:.4f} over {len(sample):,} rows", flush=True)
    del graph
    if probes:
        row["knn_recall"]["by_probes"] = _probe_recalls(X, sample, truth, probes, k)
    write(results, out)


def _probe_recalls(X: np.ndarray, sample: np.ndarray, truth: np.ndarray, probes, k: int) -> dict:
    """{probes: recall@k} of ``sample``'s rows searched in their nearest ``probes`` cells of the graph's index."""
    from raregal.discovery.knn import InvertedFile

    t0 = time.perf_counter()
    ivf = InvertedFile(X, n_probe=max(probes), random_state=0)  # the k-NN stage's cells (same seed, same rows)
    print(f"    inverted file of {ivf.n_lists:,} cells in {time.perf_counter() - t0:.0f} s", flush=True)
    out = {}
    for p in sorted(probes):
        found = ivf.search(X[sample], k + 16, probes=ivf.row_probes[sample, :p], self_index=sample, keep=k)[0]
        out[str(p)] = recall(found, truth)
        print(f"    {p:>3} probes: recall@{k} {out[str(p)]:.4f}", flush=True)
    return out


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
        if "knn_recall" in row:
            lines.append(f"| {int(n):,} | k-NN recall@50 over {row['knn_recall']['rows']:,} rows: "
                         f"{row['knn_recall']['recall']:.4f}"
                         + "".join(f"; {p} probes {r:.4f}" for p, r in row["knn_recall"].get("by_probes", {}).items())
                         + " | | |")
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
    ap.add_argument("--recall", type=int, default=0, metavar="ROWS",
                    help="then the k-NN graph's recall@50 on ROWS seeded rows against their exact neighbours")
    ap.add_argument("--recall-probes", type=int, nargs="*", default=[], metavar="P",
                    help="with --recall: also the recall of those rows searched in P of their nearest cells")
    args = ap.parse_args()
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text())["sizes"] if out.exists() else {}
    for n in args.rows:
        if args.probe_layout:
            run_probe(n, work, results, out, args.probe_layout)
        else:
            run_size(n, work, results, out)
        if args.recall:
            graph_recall(n, work, results, out, args.recall, args.recall_probes)
    print(f"results in {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
