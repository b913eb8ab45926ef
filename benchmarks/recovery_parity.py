"""Why raregal and the paper's stack recover different planted groups at 100k: one component swapped at a time.

Tables: ``make_planted`` at 100k x 128 with 20 groups of mixed size (0.1-2 %, 100 to 2,000
galaxies) and tightness (spreads 0.06, 0.12, 0.25), one table per seed. Runs, each in its own
process on one core with every thread pool at one thread, two at a time:

* ``raregal``: the default search (deterministic layout: inverted-file k-NN graph, PCA init,
  raregal's parallel optimiser, fast_hdbscan leaves);
* ``paper``: ``umap.UMAP(n_neighbors=50, n_components=5)`` then ``hdbscan.HDBSCAN(min_samples=300,
  min_cluster_size=10, leaf)``, as the paper used them (the 2-D map is left out: it does not
  change the clusters);
* one component of the paper's in raregal's search: ``exact-graph`` (the exact k-NN graph instead of
  the inverted file: graph recall), ``probe64`` (the inverted file searching 64 cells instead of
  32: most of the exact graph's recall at a fraction of its cost), ``spectral`` (umap-learn's spectral initialisation instead of
  PCA), ``umap-learn`` (umap-learn's NN-descent graph and optimiser, PCA init) and ``hdbscan``
  (the reference hdbscan library on raregal's layout: ties and implementation).

    python benchmarks/recovery_parity.py [--seeds 0 1 2 3 4] [--runs raregal paper ...]

Results: ``benchmarks/results/recovery_parity.json`` (rewritten after each run) and a Markdown
table: groups recovered per run and seed, and which groups each run loses that the paper keeps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RUNS = ("raregal", "paper", "exact-graph", "probe64", "spectral", "umap-learn", "hdbscan")
PAPER = dict(n_neighbors=50, n_components=5, min_samples=300, min_cluster_size=10)
N = 100_000


def table(seed: int):
    from raregal.evaluation.planted import make_planted

    fractions = tuple(float(f) for f in np.geomspace(0.001, 0.02, 20))
    spreads = [(0.06, 0.12, 0.25)[k % 3] for k in range(20)]
    frame = make_planted(n=N, dim=128, group_fractions=fractions, group_spread=spreads, seed=seed)
    from raregal.discovery.prefilter import campaign_columns, paper_cuts, prefilter

    kept, _ = prefilter(frame, paper_cuts(0.5, 0.3, 0.3, False, None, campaign_columns(frame.columns)))
    frame = frame[kept]
    return frame.filter(like="feat_").to_numpy(np.float32), frame["true_class"].to_numpy().astype(str)


def one(run: str, seed: int) -> dict:
    from raregal.discovery.estimator import RareClassSearch
    from raregal.evaluation.recovery import score_clusters

    X, truth = table(seed)
    t0 = time.perf_counter()
    if run == "paper":
        import hdbscan
        import umap

        Y = umap.UMAP(n_neighbors=50, n_components=5, random_state=seed).fit_transform(X)
        labels = hdbscan.HDBSCAN(min_samples=300, min_cluster_size=10, cluster_selection_method="leaf").fit(Y).labels_
    else:
        kw = {"raregal": {}, "spectral": {"umap_init": "spectral"}, "umap-learn": {"layout": "umap-learn"},
              "hdbscan": {"hdbscan_backend": "hdbscan"}, "exact-graph": {}, "probe64": {}}[run]
        est = RareClassSearch(**PAPER, random_state=seed, map_2d=False, **kw)
        if run == "exact-graph":
            import raregal.discovery.estimator as estimator
            from raregal.discovery.knn import exact_knn

            estimator.knn_graph = lambda X, k, metric, seed, deterministic: exact_knn(X, k, metric)
        if run == "probe64":
            import raregal.discovery.estimator as estimator
            from raregal.discovery.knn import partitioned_knn

            estimator.knn_graph = lambda X, k, metric, seed, deterministic: partitioned_knn(
                X, k, metric, n_probe=64, random_state=seed)
        labels = est.fit(X).labels_
    scores = score_clusters(truth, labels)
    return {"run": run, "seed": seed, "seconds": round(time.perf_counter() - t0, 1), "n_kept": len(X),
            "n_clusters": int(labels.max() + 1), "recovered": scores["n_recovered"],
            "recovered_classes": sorted(k for k, v in scores["classes"].items() if v["recovered"]),
            "classes": {k: {f: (round(v[f], 3) if isinstance(v[f], float) else v[f])
                            for f in ("n_true", "recall", "purity")} for k, v in scores["classes"].items()}}


def child(run: str, seed: int, core: int) -> dict:
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    cmd = ["taskset", "-c", str(core), sys.executable, __file__, "--one", run, str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {"run": run, "seed": seed, "error": proc.stderr[-2000:]}
    return json.loads(lines[-1])


def markdown(results: list[dict]) -> str:
    runs = [r for r in RUNS if any(x["run"] == r for x in results)]
    seeds = sorted({x["seed"] for x in results})
    get = {(x["run"], x["seed"]): x for x in results if "error" not in x}
    lines = ["| run | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | s per run |",
             "|---|" + "---:|" * (len(seeds) + 2)]
    for r in runs:
        got = [get.get((r, s)) for s in seeds]
        vals = [x["recovered"] for x in got if x]
        secs = [x["seconds"] for x in got if x]
        lines.append(f"| {r} | " + " | ".join(str(x["recovered"]) if x else "-" for x in got)
                     + f" | {np.mean(vals):.1f} | {np.mean(secs):.0f} |" if vals else f"| {r} | - |")
    lines += ["", "Groups the paper's stack recovers and the run does not (seed: groups):", ""]
    for r in runs:
        if r == "paper":
            continue
        lost = {s: sorted(set(get[("paper", s)]["recovered_classes"]) - set(get[(r, s)]["recovered_classes"]))
                for s in seeds if ("paper", s) in get and (r, s) in get}
        gained = {s: sorted(set(get[(r, s)]["recovered_classes"]) - set(get[("paper", s)]["recovered_classes"]))
                  for s in seeds if ("paper", s) in get and (r, s) in get}
        lines.append(f"- {r}: lost {lost}; found beyond the paper {gained}")
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        print(json.dumps(one(sys.argv[2], int(sys.argv[3]))), flush=True)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    ap.add_argument("--out", default=str(HERE / "results" / "recovery_parity.json"))
    args = ap.parse_args()
    out = Path(args.out)
    results = json.loads(out.read_text())["results"] if out.exists() else []
    done = {(x["run"], x["seed"]) for x in results if "error" not in x}
    todo = [(r, s) for s in args.seeds for r in args.runs if (r, s) not in done]
    with ThreadPoolExecutor(2) as pool:
        for k, res in enumerate(pool.map(lambda job: child(*job[1], core=job[0] % 2), enumerate(todo))):
            results = [x for x in results if (x["run"], x["seed"]) != (res["run"], res["seed"])] + [res]
            out.write_text(json.dumps({"n": N, "date": time.strftime("%Y-%m-%d"), "results": results}, indent=1))
            out.with_suffix(".md").write_text(markdown(results))
            print(res.get("run"), res.get("seed"), res.get("recovered", res.get("error", "")[-300:]), flush=True)
    print(f"results in {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
