"""How many processes and threads a stage may use: the CPU budget of train, embed, evaluate and synth.

No heavy imports (torch, numba) here, so any stage can ask before it loads them.
"""

from __future__ import annotations

import contextlib
import os


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """Image-decoding worker processes: half the CPU cores, at most 4 (the rest run the model)."""
    return max(0, min(4, usable_cores() // 2))


def default_threads(workers: int) -> int:
    """Torch threads for the model: the cores that neither the decoding workers nor other running
    programs (the 1-minute load average) occupy, at least 1.

    More threads than free cores is far worse than fewer: OpenMP threads spin-wait for each
    other, and on a 2-core machine busy with other work, 2 threads trained 9 img/s where 1 thread
    trained 450 img/s (mobilenetv3_small_050, 64 px, batch 64).
    """
    cores = usable_cores()
    try:
        busy = int(round(os.getloadavg()[0]))
    except (AttributeError, OSError):  # pragma: no cover - Windows
        busy = 0
    return max(1, min(cores - workers, cores - busy))


def single_blas_thread():
    """A context in which BLAS/LAPACK run on one thread (a no-op without threadpoolctl).

    For many small matrix products (a k-NN search in small blocks, UMAP's init, a guided round
    over a few thousand galaxies): there, more BLAS threads only spin-wait for each other, and on
    a 2-core machine busy with another job a guided round over 3,000 galaxies took 2.2 s with two
    and 0.18 s with one.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def run_blocks(work, jobs, threads: int) -> list:
    """``[work(job) for job in jobs]`` on ``threads`` Python threads, BLAS on one thread each.

    BLAS, numba kernels and numpy's large ufuncs release the GIL; with one BLAS thread a GEMM of
    given shapes rounds the same way every time, so each job's result depends on nothing but its
    inputs, whatever the thread count.
    """
    from concurrent.futures import ThreadPoolExecutor

    with single_blas_thread():
        if threads <= 1:
            return [work(job) for job in jobs]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(work, jobs))


@contextlib.contextmanager
def numba_threads(n: int):
    """Run the block with ``n`` numba threads, then restore the previous number."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(before)
