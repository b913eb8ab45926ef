"""``raregal explore``: an interactive map of a run, served by Bokeh on this machine.

Bokeh's server delivers BokehJS from the installed package (no CDN), so the page works offline.
:func:`serve` loads the run once (:class:`~raregal.views.explore.data.ExplorerData`) and serves one
Bokeh document per browser tab (:func:`~raregal.views.explore.app.make_document`) plus thumbnail,
CSV and ranked-candidate endpoints (:mod:`~raregal.views.explore.handlers`). Labels given on the page
go to ``RUN_DIR/labels.parquet`` at once (:mod:`~raregal.views.explore.labelling`). Its options are checked and its port bound
before the run is loaded, and it answers only to the names it is served by
(:mod:`~raregal.views.explore.listen`).
"""

from __future__ import annotations

import logging
import os
import time

from raregal.views.explore.listen import allowed_hosts, bind, check_options, host_guard

log = logging.getLogger("raregal")


def make_server(run_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 5006, catalog=None,
                max_points: int = 20000, allow_origin: list[str] | None = None, sky_layer: str = "ls-dr10"):
    """Load the run and return a started-but-not-running Bokeh server and its URL.

    ``port=0`` picks a free port. ``allow_origin`` adds host[:port] names by which the page may be
    reached (a tunnel's, say); the server answers to no other ``Host`` than these, where it
    listens and this machine's loopback names. The options are checked, the run directory looked
    at and the port bound before the run is loaded, so mistakes are reported at once, as an
    :class:`~raregal.errors.InputError` naming the parameter (the CLI shows its flag).
    ``sky_layer`` is the Legacy Surveys viewer layer the galaxy panel links to (when the run has ra/dec).
    """
    from raregal.views.report.maps import shade
    from raregal.inputs.sky import check_layer
    from raregal.runs.with_images import check_run_dir, load_run
    from raregal.views.explore.data import ExplorerData

    port, max_points, extra = check_options(port, max_points, allow_origin)
    check_layer(sky_layer)
    check_run_dir(run_dir)
    sockets = bind(host, port)
    try:
        t0 = time.perf_counter()
        run = load_run(run_dir, catalog)
        data = ExplorerData(run, max_points=max_points, sky_layer=sky_layer)
        shade(data.x[:10], data.y[:10], data.labels[:10], 8, 8)  # compile datashader's kernels before serving
        log.info("explore: %d kept galaxies, %d clusters, neighbours %s; ready in %.1f s", data.n,
                 len(data.info), "on" if data.neighbours is not None else "off", time.perf_counter() - t0)
        return _bokeh_server(data, sockets, host, extra)
    except BaseException:
        for s in sockets:
            s.close()
        raise


def _bokeh_server(data, sockets, host: str, extra: list[str]):
    """The Bokeh server for ``data`` on the bound ``sockets``, behind the Host check; and its URL.

    Bokeh's high-level ``Server`` binds its own sockets and hands requests straight to its
    tornado application, leaving no place for sockets bound beforehand or for a check in front
    of every route (and its websocket allowlist cannot hold an IPv6 address); ``BaseServer`` is
    Bokeh's documented way to put the same three parts (``BokehTornado``, tornado's
    ``HTTPServer``, the IOLoop) together explicitly.
    """
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.resources import server_url
    from bokeh.server.server import BaseServer
    from bokeh.server.tornado import BokehTornado
    from tornado.httpserver import HTTPServer
    from tornado.ioloop import IOLoop

    from raregal.views.explore.app import make_document
    from raregal.views.explore.handlers import patterns

    port = sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    allowed = allowed_hosts(host, port, extra)
    own = _local_url(host, port)
    app = BokehTornado({"/": Application(FunctionHandler(lambda doc: make_document(doc, data, own)))},
                       absolute_url=server_url(shown, port), extra_websocket_origins=allowed,
                       extra_patterns=patterns(data), check_unused_sessions_milliseconds=10000,
                       unused_session_lifetime_milliseconds=30000)
    http = HTTPServer(host_guard(app, allowed))  # Host check before any route: see listen.host_guard
    http.add_sockets(sockets)
    return BaseServer(IOLoop.current(), app, http), f"http://{shown}:{port}/"


def _local_url(host: str, port: int) -> str:
    """The explorer's URL for programs on this machine (SAMP applications fetching a VOTable).

    A wildcard address (0.0.0.0, ::) is reached through the loopback address of its family.
    """
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host.strip(), host.strip())
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(run_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 5006, catalog=None,
          open_browser: bool = True, max_points: int = 20000, allow_origin: list[str] | None = None,
          sky_layer: str = "ls-dr10") -> None:
    """Serve the explorer until interrupted (Ctrl-C). Prints the URL to open.

    Raises InputError, before loading the run, for a bad ``port``, ``host``, ``max_points`` or
    ``allow_origin`` (see :func:`make_server`).
    """
    server, url = make_server(run_dir, host, port, catalog, max_points, allow_origin, sky_layer)
    server.start()
    print(f"raregal explore: serving {run_dir} at {url}  (Ctrl-C to stop)", flush=True)
    if open_browser:  # our URL, not server.show's: that one leaves an IPv6 address unbracketed
        from bokeh.util.browser import view

        server.io_loop.add_callback(view, url)
    try:
        server.io_loop.start()
    finally:
        server.stop()
