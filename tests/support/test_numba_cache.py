"""Issue 15 (first-run latency): umap-learn's uncached kernels load from numba's cache in a new process."""

import json
import os
import subprocess
import sys

import pytest

_CHILD = r"""
import json
import numpy as np
from numba.core import event
compiled = []
class Rec(event.Listener):
    def on_start(self, ev):
        pass
    def on_end(self, ev):
        f = ev.data["dispatcher"].py_func
        compiled.append(f"{f.__module__}.{f.__qualname__}")
event.register("numba:compile", Rec())
import umap.umap_ as uu
from raregal.numba_cache import cache_kernels
switched = cache_kernels("umap")
at_import = compiled[:]  # kernels with explicit signatures compile when imported (umap.utils.tau_rand*)
compiled.clear()
rng = np.random.default_rng(0)
d = np.sort(rng.random((200, 10), dtype=np.float32), axis=1)
sigmas, rhos = uu.smooth_knn_dist(d, 10.0)
print("RESULT " + json.dumps({"switched": switched, "compiled": compiled, "at_import": at_import,
                              "sigma0": float(sigmas[0]), "rho0": float(rhos[0])}))
"""


def _child(cache_dir) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True,
                         check=True, timeout=300).stdout
    return json.loads(next(l for l in out.splitlines() if l.startswith("RESULT "))[7:])


@pytest.mark.slow
def test_second_process_loads_umap_kernels_from_the_cache(tmp_path):
    first = _child(tmp_path / "numba")
    second = _child(tmp_path / "numba")
    assert first["switched"] > 10  # umap-learn declares dozens of kernels without cache=True
    assert "umap.umap_.smooth_knn_dist" in first["compiled"]
    assert second["compiled"] == []  # loaded, not compiled
    assert set(second["at_import"]) <= {"umap.utils.tau_rand_int", "umap.utils.tau_rand"}
    assert list((tmp_path / "numba").rglob("*smooth_knn_dist*.nbi"))
    assert (second["sigma0"], second["rho0"]) == (first["sigma0"], first["rho0"])  # same machine code, same numbers
