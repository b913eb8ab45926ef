"""Numbers for the features beyond the paper: stability, merge suggestions, similar().

    python benchmarks/beyond_paper.py [--n 20000] [--dim 128] [--repeats 5] [--similar-n 300000]

1. **Stability and merge suggestions.** A seeded planted table (``raregal.evaluation.planted``) in which
   one planted group is moved apart in two touching halves (a class that leaf clustering
   splits) is searched with ``--stability``; prints each planted group's best cluster and its
   stability, the distribution of stability over clusters made only of bulk galaxies, seconds
   per repeat, and the merge suggestions that pair the two halves.
2. **Find more like these.** For each planted group, half of its members are the query and the
   other half is held back: precision of the top-(held back) candidates, for the
   nearest-member and centroid rules, at two group spreads.
3. **Index speed.** A cluster-sized query (100 galaxies, k=100) over ``--similar-n`` 128-d rows
   with the exact and inverted-file (IVF) indexes: build and query seconds and
   the IVF's recall of the exact top 100.

Results go to ``benchmarks/results/beyond_paper.json`` and are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def split_table(n, dim, seed=3):
    from raregal.evaluation.planted import make_planted

    frame = make_planted(n=n, dim=dim, group_fractions=(0.002, 0.004, 0.006, 0.01), seed=seed)
    X = frame.filter(like="feat_").to_numpy().copy()
    rows = np.flatnonzero(frame["true_class"].to_numpy() == "planted_3")
    half = rows[: len(rows) // 2]
    direction = np.random.default_rng(seed).standard_normal(dim)
    X[half] += 0.4 * direction / np.linalg.norm(direction)
    frame[[f"feat_{i}" for i in range(dim)]] = X.astype(np.float32)
    frame.loc[half, "true_class"] = "planted_3_half"
    return frame


def stability_and_merges(args) -> dict:
    from raregal.discovery.pipeline import run_search

    frame = split_table(args.n, args.dim)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reps.parquet"
        frame.to_parquet(path)
        t0 = time.perf_counter()
        summary = run_search(path, Path(tmp) / "run", n_neighbors=args.n_neighbors, min_samples=args.min_samples,
                             min_cluster_size=15, stability=args.repeats, report=False)
        wall = time.perf_counter() - t0
        table = pd.read_parquet(Path(tmp) / "run" / "clusters.parquet")
    members = table[table["cluster"] >= 0]
    truth = members.groupby("cluster")["true_class"].agg(lambda s: s.value_counts().index[0])
    info = pd.DataFrame(summary["clusters"]).set_index("cluster")
    info["truth"] = truth
    groups = {}
    for name in sorted(frame["true_class"].unique()):
        if name == "bulk":
            continue
        hits = members[members["true_class"] == name]["cluster"].value_counts()
        if len(hits):
            k = int(hits.index[0])
            groups[name] = {"cluster": k, "recall": round(hits.iloc[0] / (frame["true_class"] == name).sum(), 3),
                            "stability": info.loc[k, "stability"], "unstable": bool(info.loc[k, "unstable"])}
    bulk = info[info["truth"] == "bulk"]["stability"]
    halves = sorted(g["cluster"] for n, g in groups.items() if n.startswith("planted_3"))
    merges = pd.DataFrame(summary["merge_suggestions"])
    pair = merges[(merges["cluster_a"] == halves[0]) & (merges["cluster_b"] == halves[-1])] if len(halves) == 2 \
        and len(merges) else merges.iloc[:0]
    return {
        "n": args.n, "dim": args.dim, "kept": summary["counts"]["kept"], "n_clusters": summary["n_clusters"],
        "planted": groups,
        "bulk_clusters": {"count": int(len(bulk)), "median": round(float(bulk.median()), 3) if len(bulk) else None,
                          "min": round(float(bulk.min()), 3) if len(bulk) else None,
                          "max": round(float(bulk.max()), 3) if len(bulk) else None,
                          "unstable": int((bulk < summary["stability"]["unstable_below"]).sum())},
        "seconds_per_repeat": summary["stability"]["seconds_per_repeat"],
        "seconds_main_umap5_hdbscan": round(summary["timing"]["seconds"]["umap5"]
                                            + summary["timing"]["seconds"]["hdbscan"], 2),
        "wall_seconds": round(wall, 1),
        "n_merge_suggestions": int(len(merges)),
        "split_pair": pair.round(3).to_dict(orient="records"),
        "split_pair_rank": int(pair.index[0]) + 1 if len(pair) else None,
    }


def similar_precision(args) -> dict:
    from raregal.evaluation.planted import make_planted
    from raregal.similarity import similar

    out = {}
    for spread in (0.12, 0.3):
        frame = make_planted(n=args.n, dim=args.dim, group_spread=spread, seed=4)
        for rule in ("nearest", "centroid"):
            precisions = {}
            for name in sorted(c for c in frame["true_class"].unique() if c != "bulk"):
                ids = frame.loc[frame["true_class"] == name, "id_str"].tolist()
                query, held = ids[::2], set(ids[1::2])
                res = similar(frame, ids=query, k=len(held), query=rule, progress=False)
                precisions[name] = round(float(res["id_str"].isin(held).mean()), 3)
            out[f"spread_{spread}_{rule}"] = precisions
    # a class in two lumps: half of planted_3 moved 3 bulk sigmas along the bulk's own manifold
    # (the direction between two bulk galaxies), so the centroid of the query falls among bulk galaxies
    frame = make_planted(n=args.n, dim=args.dim, seed=4)
    X = frame.filter(like="feat_").to_numpy().copy()
    rows = np.flatnonzero(frame["true_class"].to_numpy() == "planted_3")
    bulk = np.flatnonzero(frame["true_class"].to_numpy() == "bulk")
    direction = X[bulk[0]] - X[bulk[1]]
    X[rows[: len(rows) // 2]] += 3.0 * direction / np.linalg.norm(direction)
    frame[[f"feat_{i}" for i in range(args.dim)]] = X.astype(np.float32)
    ids = frame["id_str"].to_numpy()[rows]
    query, held = ids[::2].tolist(), set(ids[1::2])
    for rule in ("nearest", "centroid"):
        res = similar(frame, ids=query, k=len(held), query=rule, progress=False)
        out[f"two_lumps_{rule}"] = round(float(res["id_str"].isin(held).mean()), 3)
    return out


def index_speed(args) -> dict:
    from raregal.similarity import NeighbourSearch, rank_neighbours

    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.similar_n, 128)).astype(np.float32)
    centre = rng.standard_normal(128).astype(np.float32) * 1.5
    X[:200] = centre + 0.3 * rng.standard_normal((200, 128))  # a planted class of 200
    query = np.arange(100)
    out, exact_rows = {}, None
    for kind in ("exact", "ivf"):
        t0 = time.perf_counter()
        index = NeighbourSearch(X, kind)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows = rank_neighbours(X, query, 100, "nearest", index)[0]
        search = time.perf_counter() - t0
        if kind == "exact":
            exact_rows = set(rows)
        out[kind] = {"build_s": round(build, 2), "query_s": round(search, 2),
                     "recall_vs_exact": round(len(set(rows) & exact_rows) / len(exact_rows), 3),
                     "planted_in_top100": int((rows < 200).sum())}
    return {"n": args.similar_n, "dim": 128, "query_size": 100, "k": 100, **out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n-neighbors", type=int, default=30)
    ap.add_argument("--min-samples", type=int, default=20)
    ap.add_argument("--similar-n", type=int, default=300_000)
    ap.add_argument("--skip", nargs="*", default=[], choices=["stability", "similar", "index"])
    args = ap.parse_args()
    from raregal.timing import setup_logging

    setup_logging()
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    for name, fn in (("stability", stability_and_merges), ("similar", similar_precision), ("index", index_speed)):
        if name in args.skip:
            continue
        t0 = time.perf_counter()
        results[name] = fn(args)
        print(name, json.dumps(results[name], indent=1, default=float), f"({time.perf_counter() - t0:.0f} s)",
              flush=True)
    dest = HERE / "results" / "beyond_paper.json"
    dest.parent.mkdir(exist_ok=True)
    old = json.loads(dest.read_text()) if dest.exists() else {}
    dest.write_text(json.dumps({**old, **results}, indent=1, default=float) + "\n")
    print(f"results in {dest}")


if __name__ == "__main__":
    main()
