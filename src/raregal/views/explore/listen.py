"""Where the explorer listens, and to which names it answers.

:func:`check_options` and :func:`bind` run before the run is loaded, so a wrong ``--port``,
``--host`` or ``--max-points`` is reported at once as an :class:`~raregal.errors.InputError`
naming the flag (or the Python parameter), not as a traceback after the expensive loading.

:func:`host_guard` puts a check of the HTTP ``Host`` header in front of every route of the
server (Bokeh's page, its websocket, its static files and raregal's own ``/thumb``, ``/export``
and ``/cluster`` endpoints). It is the defence against DNS rebinding: a web page on another
site whose name is made to resolve to 127.0.0.1 reaches this server with its own name in
``Host``, and is refused (403) before any handler runs, so it cannot read the file paths in
``/cluster/K.csv``. Browsers always send the name they connected to, and scripts cannot
change it.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from tornado.routing import AnyMatches, Matcher, Rule, RuleRouter
from tornado.web import Application, RequestHandler

from raregal.errors import InputError

def _whole(value) -> int | None:
    """``value`` as an int when it is a whole number (an int, or a string of one; not a bool), else None."""
    if isinstance(value, bool):
        return None
    try:
        whole = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return whole if isinstance(value, str) or whole == value else None


def _origin(value) -> str:
    """An ``--allow-origin`` value as Bokeh's ``host:port`` allowlist entry (port 80 when left out)."""
    if value == "*":  # Bokeh's "any host": allowed, at the user's own risk
        return value
    try:
        parts = urlsplit(f"//{value}")
        host, port = parts.hostname, parts.port
    except (TypeError, ValueError) as err:
        raise InputError(f"allow_origin {value!r}: not a HOST[:PORT] ({err})", param="allow_origin") from None
    if not host or parts.path or parts.query or parts.fragment or parts.username:
        raise InputError(f"allow_origin {value!r}: not a HOST[:PORT] (e.g. localhost:8080 or my.tunnel.org)",
                         param="allow_origin")
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port if port is not None else 80}"


def check_options(port, max_points, allow_origin: Sequence[str] | None) -> tuple[int, int, list[str]]:
    """Validate what :func:`bind` and the server need; return (port, max_points, extra origins).

    Raises InputError naming the parameter (the CLI shows its flag, :func:`raregal.errors.in_cli_terms`).
    """
    p = _whole(port)
    if p is None or not 0 <= p <= 65535:
        raise InputError(f"port {port}: must be a port number 1..65535, or 0 to pick a free one", param="port")
    m = _whole(max_points)
    if m is None or m < 1:
        raise InputError(f"max_points {max_points}: must be a positive whole number", param="max_points")
    if isinstance(allow_origin, str):
        allow_origin = [allow_origin]
    extra = [_origin(v) for v in (allow_origin or [])]
    return p, m, extra


def bind(host, port: int) -> list[socket.socket]:
    """Listening sockets on ``host``:``port`` (0 = a free port), or an InputError saying why not."""
    from tornado.netutil import bind_sockets

    both = ("host", "port")  # the CLI shows these as --host and --port
    if not isinstance(host, str) or not host.strip():
        raise InputError(f"host {host!r}: must be an address or name of this machine, e.g. 127.0.0.1", param="host")
    try:
        return bind_sockets(port, address=host)
    except socket.gaierror as err:
        raise InputError(f"host {host}: cannot be resolved to an address of this machine ({err.strerror})",
                         param="host") from None
    except UnicodeError as err:
        raise InputError(f"host {host!r}: not a valid name ({err})", param="host") from None
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise InputError(f"port {port}: already in use by another program on {host}; pick another or port 0",
                             param="port") from None
        if err.errno == errno.EACCES:
            raise InputError(f"port {port}: this user may not listen on it (ports below 1024 need privileges); "
                             "pick another or port 0", param="port") from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise InputError(f"host {host}: not an address of this machine ({err.strerror})", param="host") from None
        raise InputError(f"host {host} port {port}: cannot listen there ({err.strerror or err})", param=both) from None


def allowed_hosts(host: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    """``host:port`` names the server answers to: where it listens, this machine's loopback names, ``extra``."""
    names = {host.strip().lower(), "localhost", "127.0.0.1", "::1"}
    own = [f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in names]
    return sorted(set(own) | set(extra))


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """Whether an HTTP ``Host`` value is one of ``allowed`` (Bokeh's own matching, as for websocket Origins)."""
    from bokeh.server.util import check_allowlist

    return check_allowlist(host.strip().lower(), allowed)


class _HostIs(Matcher):
    """Matches requests whose ``Host`` header is one of the allowed names."""

    def __init__(self, allowed: Sequence[str]):
        self.allowed = list(allowed)

    def match(self, request):
        return {} if host_allowed(request.host or "", self.allowed) else None


class _WrongHost(RequestHandler):
    """403 for every request that named another host (any path, any method).

    403 as Jupyter's server answers a foreign Host; 421 (Misdirected Request) would fit too, but
    HTTP/2 clients take it as a cue to retry on another connection.
    """

    def prepare(self):
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("raregal explore does not answer to this host name. If you reach it through a tunnel "
                    "or another name, start it with --allow-origin HOST:PORT.\n")


def host_guard(app: Application, allowed: Sequence[str]) -> RuleRouter:
    """A router for tornado's ``HTTPServer``: ``app`` for allowed ``Host`` values, 403 for the rest.

    Routing on the Host header is tornado's own mechanism (``tornado.routing``), and the router
    sits in front of the whole Bokeh application, so every route is covered, including Bokeh's
    static files and websocket, which no hook of Bokeh reaches: ``auth_provider`` guards only its
    document and websocket handlers, ``include_headers`` only copies headers into the session,
    and ``BokehTornado`` passes no tornado ``transforms``.
    """
    return RuleRouter([Rule(_HostIs(allowed), app),
                       Rule(AnyMatches(), Application([(r".*", _WrongHost)]))])
