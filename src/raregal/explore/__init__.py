"""``raregal explore``: an interactive map of a run, served by Bokeh on this machine.

Bokeh's server delivers BokehJS from the installed package (no CDN), so the page works offline.
:func:`serve` loads the run once (:class:`~raregal.explore.data.ExplorerData`) and serves one
Bokeh document per browser tab (:func:`~raregal.explore.app.make_document`) plus thumbnail and
CSV endpoints (:mod:`~raregal.explore.handlers`).
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("raregal")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def make_server(run_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 5006, catalog=None,
                max_points: int = 20000, allow_origin: list[str] | None = None):
    """Load the run and return a started-but-not-running Bokeh ``Server`` and its URL.

    ``port=0`` picks a free port. ``allow_origin`` adds host[:port] values from which the page may
    open its websocket (needed when it is reached by another name than ``host``).
    """
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server

    from ..report.maps import shade
    from ..report.rundir import load_run
    from .app import make_document
    from .data import ExplorerData
    from .handlers import patterns

    t0 = time.perf_counter()
    run = load_run(run_dir, catalog)
    data = ExplorerData(run, max_points=max_points)
    shade(data.x[:10], data.y[:10], data.labels[:10], 8, 8)  # compile datashader's kernels before serving
    log.info("explore: %d kept galaxies, %d clusters, neighbours %s; ready in %.1f s", data.n, len(data.info),
             "on" if data.neighbours is not None else "off", time.perf_counter() - t0)
    port = int(port) or free_port(host)
    origins = {f"{host}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"} | set(allow_origin or [])
    server = Server({"/": Application(FunctionHandler(lambda doc: make_document(doc, data)))},
                    address=host, port=port, allow_websocket_origin=sorted(origins),
                    extra_patterns=patterns(data), check_unused_sessions_milliseconds=10000,
                    unused_session_lifetime_milliseconds=30000)
    shown = f"[{host}]" if ":" in host else host
    return server, f"http://{shown}:{port}/"


def serve(run_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 5006, catalog=None,
          open_browser: bool = True, max_points: int = 20000, allow_origin: list[str] | None = None) -> None:
    """Serve the explorer until interrupted (Ctrl-C). Prints the URL to open."""
    server, url = make_server(run_dir, host, port, catalog, max_points, allow_origin)
    server.start()
    print(f"raregal explore: serving {run_dir} at {url}  (Ctrl-C to stop)", flush=True)
    if open_browser:
        server.io_loop.add_callback(server.show, "/")
    try:
        server.io_loop.start()
    finally:
        server.stop()
