"""How the report map and the explorer's view updates scale to survey size (default 632k galaxies).

    python benchmarks/report_map.py [--n 632000] [--clusters 200] [--tree]

Times, on synthetic 2-D map positions with planted small clusters:
* the report's datashader map PNG (``raregal.views.report.maps.plot_map``);
* one explorer view update: datashader raster of the view + choosing the hover markers
  (``ExplorerData.in_view``), full view and zoomed in, and a click (k-d tree) and a lasso;
* with ``--tree``: fast_hdbscan on the points and hdbscan's condensed-tree plot of the result.
Prints one line per step with seconds and peak memory.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def synthetic(n: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=n), rng.normal(size=n)
    labels = np.full(n, -1)
    per = max(10, int(0.05 * n / k))
    for c in range(k):
        centre = rng.normal(size=2) * 2.2
        rows = rng.choice(n, per, replace=False)
        x[rows] = centre[0] + rng.normal(size=per) * 0.04
        y[rows] = centre[1] + rng.normal(size=per) * 0.04
        labels[rows] = c
    return x, y, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=632_000)
    ap.add_argument("--clusters", type=int, default=200)
    ap.add_argument("--tree", action="store_true", help="also cluster with fast_hdbscan and plot the condensed tree")
    args = ap.parse_args()

    import pandas as pd

    from raregal.views.explore.data import ExplorerData
    from raregal.views.report import maps
    from raregal.runs.model import Run
    from raregal.timing import peak_rss_mib

    def step(name, fn, repeat=1):
        fn()  # warm-up (numba compiles datashader's kernels once per process)
        t0 = time.perf_counter()
        for _ in range(repeat):
            out = fn()
        print(f"{name:<44s} {(time.perf_counter() - t0) / repeat:8.3f} s   peak {peak_rss_mib():7.0f} MiB", flush=True)
        return out

    x, y, labels = synthetic(args.n, args.clusters)
    print(f"{args.n:,} galaxies, {args.clusters} clusters, {(labels >= 0).sum():,} clustered")
    step("report map PNG (1200x900)", lambda: maps.plot_map(x, y, labels, "/tmp/raregal_bench_map.png"))

    frame = pd.DataFrame({"id_str": np.arange(args.n).astype(str), "cluster": labels,
                          "probability": np.where(labels >= 0, 0.9, 0.0), "kept": True, "umap2_0": x, "umap2_1": y})
    run = Run(clusters=frame, path=__import__("pathlib").Path("."))
    t0 = time.perf_counter()
    data = ExplorerData(run, neighbours=False)
    print(f"{'explorer: load (k-d tree, priorities)':<44s} {time.perf_counter() - t0:8.3f} s")
    (x0, x1), (y0, y1) = data.x_range, data.y_range

    def view(a, b, c, d):
        maps.shade(data.x, data.y, data.labels, 780, 640, (a, b), (c, d), colors=data.colors)
        return data.in_view(a, b, c, d)

    rows, total = step("explorer: view update, full map", lambda: view(x0, x1, y0, y1), repeat=5)
    print(f"    {total:,} in view, {len(rows):,} hover markers sent")
    rows, total = step("explorer: view update, zoomed 20x", lambda: view(-0.1, 0.1, -0.1, 0.1), repeat=5)
    print(f"    {total:,} in view, {len(rows):,} hover markers sent")
    step("explorer: click (nearest galaxy)", lambda: data.nearest(0.1, 0.2, 0.01, 0.01), repeat=20)
    t = np.linspace(0, 2 * np.pi, 40)
    sel = step("explorer: lasso (40-vertex polygon)", lambda: data.in_polygon(np.cos(t), np.sin(t)), repeat=3)
    print(f"    {len(sel):,} selected")

    if args.tree:
        import fast_hdbscan

        from raregal.views.report.tree import TreePlot

        X = np.c_[x, y]
        t0 = time.perf_counter()
        est = fast_hdbscan.HDBSCAN(min_samples=300, min_cluster_size=10, cluster_selection_method="leaf").fit(X)
        tree = pd.DataFrame({f: est._condensed_tree[f] for f in ("parent", "child", "lambda_val", "child_size")})
        tree.to_parquet("/tmp/raregal_bench_tree.parquet")
        print(f"{'fast_hdbscan (for the tree)':<44s} {time.perf_counter() - t0:8.3f} s   "
              f"{est.labels_.max() + 1} clusters, {(tree.child_size > 1).sum()} branches")
        leaves = tree[tree.child_size > 1].child
        leaves = [int(c) for c in leaves if c not in set(tree.parent[tree.child_size > 1])]
        nodes = dict(enumerate(leaves))
        colors = maps.cluster_colors(nodes)
        t0 = time.perf_counter()
        plot = TreePlot(tree, nodes, colors)
        plot.save("/tmp/raregal_bench_tree.png")
        print(f"{'condensed tree plot':<44s} {time.perf_counter() - t0:8.3f} s")
        t0 = time.perf_counter()
        for k in list(nodes)[:20]:
            plot.save(f"/tmp/raregal_bench_tree_{k}.png", highlight=k, width=560)
        print(f"{'per-cluster tree locator (each)':<44s} {(time.perf_counter() - t0) / max(1, min(20, len(nodes))):8.3f} s")
        plot.close()


if __name__ == "__main__":
    main()
