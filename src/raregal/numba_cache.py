"""Numba's on-disk cache for the libraries' kernels too, so a second process does not recompile them.

raregal's search runs numba kernels of umap-learn, pynndescent, fast_hdbscan and (for the map
pictures) datashader. Most of pynndescent's and fast_hdbscan's are declared ``cache=True`` and
load from numba's cache in a later process; umap-learn's fuzzy-graph and layout kernels
(``smooth_knn_dist``, ``compute_membership_strengths``, the per-epoch optimisers) and a few
others are not, so every fresh process paid ~5 s compiling them again (measured on the demo's
search, 2 cores). :func:`cache_kernels` turns numba's own cache on for every jitted function of
those packages that lacks it, before their first call: ``Dispatcher.enable_caching()`` is the
method numba's ``@njit(cache=True)`` itself calls, so the cache files, their index (keyed by the
source file's modification time, so an upgrade of the library recompiles) and their location
(``NUMBA_CACHE_DIR``, which the CLI and the Makefile set) are numba's. Nothing here compiles or
changes a result: a cached kernel is the same machine code as a freshly compiled one.

Two small umap-learn kernels with explicit signatures (``umap.utils.tau_rand_int``,
``tau_rand``) compile when umap is imported, before this can reach them: ~0.5 s a process.
Functions numba cannot cache (closures over dynamic globals) stay uncached; numba then warns
when it tries to save them. :func:`cache_kernels` silences that one warning ("Cannot cache
compiled function", numba's, for the rest of the process: it is a note that a kernel compiles
anew next time, never a wrong result).
"""

from __future__ import annotations

import sys
import warnings

_PACKAGES = ("umap", "pynndescent", "fast_hdbscan", "datashader")
_done: set[str] = set()


def _dispatchers(module):
    """The numba dispatchers defined in ``module`` itself (not those it imports)."""
    from numba.core.dispatcher import Dispatcher

    for value in list(vars(module).values()):
        if isinstance(value, Dispatcher) and getattr(value.py_func, "__module__", None) == module.__name__:
            yield value


def cache_kernels(*packages: str) -> int:
    """Enable numba's disk cache on the uncached kernels of the imported ``packages``.

    Call it after importing a package and before its first kernel runs (the reducer and the
    map renderer do). ``packages`` defaults to every library raregal runs kernels of. Each
    module is visited once per process. Returns how many dispatchers were switched on.
    """
    from numba.core.caching import NullCache

    wanted = packages or _PACKAGES
    switched = 0
    for name, module in list(sys.modules.items()):
        if module is None or name in _done or name.split(".")[0] not in wanted:
            continue
        _done.add(name)
        for dispatcher in _dispatchers(module):
            if isinstance(dispatcher._cache, NullCache):
                dispatcher.enable_caching()
                switched += 1
    if switched:
        warnings.filterwarnings("ignore", message="Cannot cache compiled function", module="numba")
    return switched
