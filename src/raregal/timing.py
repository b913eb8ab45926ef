"""Timing, memory and progress reporting shared by every stage.

:class:`StageTimer` records wall seconds and the process's peak resident memory per named
stage, so a run's ``summary.json`` can say where time and memory went. :class:`Progress` says,
during a step that takes minutes or hours (the k-NN graph, a layout's epochs, HDBSCAN's core
distances at millions of galaxies), how far it is and about how long it has left.
"""

from __future__ import annotations

import contextvars
import logging
import resource
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

log = logging.getLogger("raregal")

#: Seconds between two progress lines of one step; a step shorter than this says nothing.
PROGRESS_EVERY = 60.0
#: The stage being timed (:meth:`StageTimer.stage`), which names the progress lines of the steps inside it.
_STAGE: contextvars.ContextVar[str] = contextvars.ContextVar("raregal_stage", default="")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class StageTimer:
    """Collect ``{stage: seconds}`` and peak memory; use :meth:`stage` as a context manager."""

    def __init__(self, echo: bool = True):
        self.seconds: dict[str, float] = {}
        self.peak_mib: dict[str, float] = {}
        self.echo = echo
        self.started = time.perf_counter()

    @contextmanager
    def stage(self, name: str, echo: bool | None = None) -> Iterator[None]:
        """Time the block as stage ``name`` (a stage timed twice adds up); ``echo`` overrides :attr:`echo`.

        The log line gives the stage's seconds so far, so a stage split in two (``raregal search``
        reads the file quietly, then checks the table) logs once, with its whole time.
        """
        t0 = time.perf_counter()
        token = _STAGE.set(name)
        try:
            yield
        finally:
            _STAGE.reset(token)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
        self.peak_mib[name] = peak_rss_mib()
        if self.echo if echo is None else echo:
            log.info("%-10s %8.1f s   peak memory %7.0f MiB", name, self.seconds[name], self.peak_mib[name])

    def as_dict(self) -> dict:
        return {
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "total_seconds": round(sum(self.seconds.values()), 3),
            "peak_memory_mib": round(max(self.peak_mib.values(), default=peak_rss_mib()), 1),
            "peak_memory_mib_after_stage": {k: round(v, 1) for k, v in self.peak_mib.items()},
        }

    def totals(self) -> dict:
        """:meth:`as_dict` with the wall seconds since the timer was made and the process's peak memory so far."""
        return {**self.as_dict(), "wall_seconds": round(time.perf_counter() - self.started, 3),
                "peak_memory_mib": round(peak_rss_mib(), 1)}


def duration(seconds: float) -> str:
    """``seconds`` as a person reads it: "42 s", "12.5 min", "3.1 h"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


class Progress:
    """How far a long step is and about how long it has left, logged at most every ``every`` seconds.

    ``total``: the step's work, in any unit proportional to its time (rows searched, edge samples
    of a layout), or None when only what is done can be said (then no share and no time left).
    :meth:`advance` adds work done and may be called from several threads (the k-NN graph's
    blocks); :meth:`update` sets it. The time left is the time so far times the work left over the
    work done. Lines are named after the stage being timed (:meth:`StageTimer.stage`), e.g.
    ``umap5       25.0 % of 16,179,937,130 edge samples (epoch 53 / 200), 27.5 min so far,
    about 82.5 min left``.
    """

    def __init__(self, what: str, total: float | None = None, every: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.what, self.total, self.done = what, total, 0.0
        self.every = PROGRESS_EVERY if every is None else every
        self.stage = _STAGE.get()  # "" outside a timed stage
        self.clock = clock
        self.started = self._last = clock()
        self._lock = threading.Lock()
        self.lines: list[str] = []  # what was logged, for the caller (and the tests)

    def advance(self, amount: float, detail: str = "") -> None:
        with self._lock:
            self._report(self.done + amount, detail)

    def update(self, done: float, detail: str = "") -> None:
        with self._lock:
            self._report(done, detail)

    def _report(self, done: float, detail: str) -> None:
        self.done = done
        now = self.clock()
        if now - self._last < self.every:
            return
        self._last = now
        spent = now - self.started
        detail = f" ({detail})" if detail else ""
        name = f"{self.stage:<10} " if self.stage else ""
        if self.total:
            share = min(1.0, done / self.total)
            left = spent * (1 - share) / share if share > 0 else float("nan")
            line = (f"{name}{100 * share:5.1f} % of {self.total:,.0f} {self.what}{detail}, {duration(spent)} so far, "
                    f"about {duration(left) if share > 0 else '?'} left")
        else:
            line = f"{name}{self.what}: {done:,.0f}{detail}, {duration(spent)} so far"
        self.lines.append(line)
        log.info(line)


class _StderrHandler(logging.StreamHandler):
    """A StreamHandler on whatever ``sys.stderr`` is when a line is written, not when it was made
    (a caller or a test harness that swaps stderr, then closes the old one, still gets the lines)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it; the property always answers sys.stderr
        pass


def setup_logging(verbose: bool = False) -> None:
    """Log raregal's messages to stderr as plain lines (idempotent)."""
    logger = logging.getLogger("raregal")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
