"""Timing, memory and progress reporting shared by every stage.

:class:`StageTimer` records wall seconds and the process's peak resident memory per named
stage, so a run's ``summary.json`` can say where time and memory went.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger("raregal")


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
        yield
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
