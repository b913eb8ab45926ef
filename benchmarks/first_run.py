"""First-run latency: numba compilation in a fresh process, with an empty and with a warm cache.

Runs the same small ``raregal search`` (planted table, report included, so datashader's map
kernels run too) as whole processes one after another against one fresh ``NUMBA_CACHE_DIR``:
the first pays every compilation, the second loads what the first cached. In each process a
listener on numba's ``numba:compile`` event times every compilation by kernel (nested
compilations are inside their caller's time, so the per-kernel list is not a sum). Issue 15's
goal: the second process compiles for at most 3 s.

    .venv/bin/python benchmarks/first_run.py [--n 3000] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from numba.core import event
stack, spent = [], {}
class Timer(event.Listener):  # compilations nest, so a stack pairs each start with its end
    outer = 0.0
    def on_start(self, ev):
        stack.append(time.perf_counter())
    def on_end(self, ev):
        took = time.perf_counter() - stack.pop()
        f = ev.data["dispatcher"].py_func
        name = f"{f.__module__}.{f.__qualname__}"
        spent[name] = spent.get(name, 0.0) + took
        if not stack:
            Timer.outer += took
event.register("numba:compile", Timer())
from raregal.cli import main
main(sys.argv[1:])
print("FIRST_RUN " + json.dumps({"wall_s": time.perf_counter() - t0, "compile_s": Timer.outer,
                                  "kernels": sorted(spent.items(), key=lambda kv: -kv[1])[:8]}))
"""


def _run(table: Path, out: Path, cache: Path) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", _CHILD, "search", str(table), "--out", str(out),
                           "--min-samples", "20"], env=env, capture_output=True, text=True, check=True)
    line = next(l for l in done.stdout.splitlines() if l.startswith("FIRST_RUN "))
    return json.loads(line[len("FIRST_RUN "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="galaxies in the planted table")
    parser.add_argument("--runs", type=int, default=2, help="processes, one after another")
    args = parser.parse_args()
    from raregal.evaluation.planted import make_planted

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_planted(n=args.n, seed=0).to_parquet(tmp / "planted.parquet")
        for i in range(args.runs):
            r = _run(tmp / "planted.parquet", tmp / f"run{i}", tmp / "numba")
            print(f"process {i + 1}: {r['wall_s']:.1f} s wall, {r['compile_s']:.1f} s compiling "
                  f"({'empty' if i == 0 else 'warm'} cache)")
            for name, seconds in r["kernels"][:5]:
                print(f"    {seconds:6.2f} s  {name}")


if __name__ == "__main__":
    main()
