"""The distributed search (``raregal search --dask``) against the one-machine search, on a planted table.

The table (``make_planted``, 128-d) has 20 planted groups of mixed size (0.03-1 % of the rows, 300 to
10,000 galaxies at 1M) and mixed tightness (spreads 0.06, 0.12, 0.25 in units of the bulk's), and the
smooth / edge-on / artifact galaxies the pre-filter removes (about half). It is written once as
Parquet parts, the form ``raregal embed --dask`` writes. Each search runs in its own process under
``/usr/bin/time`` (its peak memory); a group counts as recovered at recall >= 0.5, purity >= 0.8.

    python benchmarks/distributed_search.py --rows 1000000 --mode single
    python benchmarks/distributed_search.py --rows 1000000 --mode dask [--sample 200000]

Results: ``benchmarks/results/distributed_search.json`` (rewritten after each search) and a Markdown
table beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
N_GROUPS = 20
SPREADS = (0.06, 0.12, 0.25)


def group_fractions() -> tuple[float, ...]:
    return tuple(float(f) for f in np.geomspace(0.0003, 0.01, N_GROUPS))


def make_table(folder: Path, n: int, seed: int = 0, parts: int = 8) -> Path:
    """Write the planted table as ``parts`` Parquet files in ``folder`` (once)."""
    from raregal.evaluation.planted import make_planted

    if (folder / "_done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    spreads = [SPREADS[k % len(SPREADS)] for k in range(N_GROUPS)]
    frame = make_planted(n=n, dim=128, group_fractions=group_fractions(), group_spread=spreads, seed=seed)
    for i, rows in enumerate(np.array_split(np.arange(n), parts)):
        frame.iloc[rows].to_parquet(folder / f"part-{i:05d}.parquet", index=False)
    (folder / "_done").write_text("")
    return folder


def timed(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` under /usr/bin/time -v; seconds and peak MiB (of the largest process)."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=fh, stderr=subprocess.STDOUT)
    text = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed, see {log}:\n{text[-3000:]}")
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
    return {"seconds": time.perf_counter() - t0, "peak_mib_largest_process": peak}


def score(run: Path, table: Path) -> dict:
    import pandas as pd

    from raregal.evaluation.recovery import score_clusters

    clusters = pd.read_parquet(run / "clusters.parquet", columns=["id_str", "cluster"])
    truth = pd.read_parquet(table, columns=["id_str", "true_class"])
    merged = truth.merge(clusters, on="id_str", how="left")
    scores = score_clusters(merged["true_class"], merged["cluster"].fillna(-1).astype(int))
    return {"n_recovered": scores["n_recovered"], "n_classes": scores["n_classes"],
            "n_clusters": scores["n_clusters"], "bulk_fraction_clustered": scores["bulk_fraction_clustered"],
            "recovered": sorted(k for k, e in scores["classes"].items() if e["recovered"]),
            "recall": {k: round(e["recall"], 3) for k, e in scores["classes"].items()},
            "n_true": {k: e["n_true"] for k, e in scores["classes"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--mode", choices=("single", "dask"), required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample", type=int, default=None, help="dask: galaxies the layout is fitted on")
    ap.add_argument("--workers", type=int, default=2, help="dask: LocalCluster worker processes")
    ap.add_argument("--work", default="/tmp/raregal_distributed")
    ap.add_argument("--out", default=str(HERE / "results" / "distributed_search.json"))
    args = ap.parse_args()
    work, out = Path(args.work), Path(args.out)
    table = make_table(work / f"planted_{args.rows}", args.rows)
    run = work / f"run_{args.mode}_{args.rows}_{args.seed}"
    cmd = [str(Path(sys.executable).parent / "raregal"), "search", str(table), "--out", str(run), "--overwrite",
           "--seed", str(args.seed), "--no-report"]
    if args.mode == "dask":
        cmd += ["--dask", "local", "--dask-workers", str(args.workers)]
        if args.sample:
            cmd += ["--dask-sample", str(args.sample)]
    key = f"{args.mode}_{args.rows}_{args.seed}" + (f"_sample{args.sample}" if args.sample else "")
    row = timed(cmd, work / f"{key}.log")
    row.update(score(run, table))
    summary = json.loads((run / "summary.json").read_text())
    row["timing"] = summary.get("timing")
    row["counts"] = summary.get("counts")
    row["distributed"] = summary.get("distributed")
    results = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    results["meta"] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
                       "date": time.strftime("%Y-%m-%d"), "groups": N_GROUPS,
                       "group_fractions": group_fractions(), "spreads": SPREADS}
    results["runs"][key] = row
    out.write_text(json.dumps(results, indent=1))
    write_md(results, out.with_suffix(".md"))
    print(f"{key}: {row['n_recovered']}/{row['n_classes']} groups, {row['seconds']:.0f} s, "
          f"{row['peak_mib_largest_process']:.0f} MiB; results in {out}")


def write_md(results: dict, path: Path) -> None:
    lines = [f"Machine: {results['meta']['machine']}; {results['meta']['date']}.", "",
             "| run | groups recovered | clusters | bulk clustered | seconds | peak MiB (largest process) |",
             "|---|---:|---:|---:|---:|---:|"]
    for key, r in sorted(results["runs"].items()):
        lines.append(f"| {key} | {r['n_recovered']}/{r['n_classes']} | {r['n_clusters']} | "
                     f"{100 * (r['bulk_fraction_clustered'] or 0):.1f}% | {r['seconds']:.0f} | "
                     f"{r['peak_mib_largest_process']:.0f} |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
