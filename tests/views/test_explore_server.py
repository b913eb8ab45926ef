"""``raregal explore`` as a server: checks before the run is loaded, the Host check, 4xx for bad requests.

A real explorer on 127.0.0.1 (free port) in a thread; requests through ``http.client`` so the
``Host`` header can be set as a DNS-rebinding page would get it set by the browser.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import queue
import socket
import threading

import pytest

from raregal.errors import InputError

TUNNEL = "tunnel.example.org:8443"


def _start(run_dir, **kwargs):
    """An explorer (make_server(run_dir, port=0, **kwargs)) running in a thread with its own event loop."""
    from raregal.views.explore import make_server

    q = queue.Queue()

    def serve():
        asyncio.set_event_loop(asyncio.new_event_loop())
        try:
            server, url = make_server(run_dir, port=0, max_points=50, **kwargs)
        except BaseException as err:  # report it to the test instead of hanging
            q.put(err)
            raise
        server.start()
        q.put((server, url))
        server.io_loop.start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    got = q.get(timeout=90)
    if isinstance(got, BaseException):
        raise got
    return got[0], got[1], thread


def _stop(server, thread):
    server.io_loop.add_callback(server.io_loop.stop)
    thread.join(10)


@pytest.fixture(scope="module")
def served(tiny_run_dir):
    """(server, port) of the explorer of the tiny run, also reachable by the name :data:`TUNNEL`."""
    server, url, thread = _start(tiny_run_dir, allow_origin=[TUNNEL])
    yield server, server.port
    _stop(server, thread)


def _get(port, path, host=None, address="127.0.0.1"):
    """(status, body) of ``GET path`` on address:port with the ``Host`` header ``host``."""
    conn = http.client.HTTPConnection(address, port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": f"127.0.0.1:{port}" if host is None else host})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.fixture
def no_load(monkeypatch):
    """Make loading a run fail the test: the checks under test must come before it."""
    import raregal.runs.with_images as rundir

    def load_run(*args, **kwargs):
        raise AssertionError("the run was loaded before the options were checked")

    monkeypatch.setattr(rundir, "load_run", load_run)


def test_host_header_is_checked_on_every_route(served, tiny_run_dir):
    server, port = served
    paths = ["/", "/cluster/0.csv", "/cluster/-1.csv", "/thumb/3?s=64", "/export/0123456789abcdef.csv",
             "/ws", "/static/js/bokeh.min.js", "/favicon.ico", "/no/such/page"]
    wrong = ["evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}", f"localhost:{port + 1}",
             "tunnel.example.org", "", "[::2]:80"]
    for host in wrong:
        for path in paths:
            status, body = _get(port, path, host)
            assert status == 403, (host, path, status)
            assert str(tiny_run_dir.parent) not in body.decode("utf-8", "replace") and b"img_" not in body
    for host in [f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}", TUNNEL]:
        status, body = _get(port, "/cluster/0.csv", host)
        assert status == 200 and str(tiny_run_dir.parent) in body.decode(), host
    status, body = _get(port, "/")
    assert status == 200 and b"static/js/bokeh" in body

    # Bokeh's websocket still opens through the check, and the explorer's document is built
    from bokeh.client import pull_session

    with pull_session(url=f"http://127.0.0.1:{port}/") as session:
        assert session.document.get_model_by_name("map") is not None


#: (request, status): sizes that are no whole number of pixels 16..512 get 400; rows and clusters that
#: cannot exist (also past int64, or past the 4300 digits int() accepts) 404.
BAD_REQUESTS = [
    ("/thumb/5?s=abc", 400), ("/thumb/5?s=-5", 400), ("/thumb/5?s=0", 400), ("/thumb/5?s=", 400),
    ("/thumb/5?s=1e3", 400), ("/thumb/5?s=9999", 400), ("/thumb/5?s=" + "9" * 5000, 400),
    ("/thumb/99999999999999999999", 404), ("/thumb/" + "9" * 5000, 404), ("/thumb/-3", 404),
    ("/cluster/abc.csv", 404), ("/cluster/99999999999999999999999.csv", 404),
    ("/cluster/-" + "9" * 5000 + ".csv", 404), ("/cluster/77.csv", 404),
    ("/export/zz.csv", 404), ("/export/0123456789abcdef.csv", 404),
    ("/guided/" + "x" * 5000 + ".csv", 404), ("/guided/" + "x" * 999 + ".fits", 404),  # class names: no file names
]


def test_bad_requests_get_4xx_without_a_traceback(served, caplog):
    server, port = served
    caplog.set_level(logging.WARNING)
    wrong = []
    for path, status in BAD_REQUESTS:
        got, body = _get(port, path)
        if got != status:
            wrong.append((path[:40], got, body[:200]))
    assert not wrong
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage()[:200] for r in bad]


def test_good_thumbnail_sizes_still_served(served):
    server, port = served
    for s in ("16", "82", "424", "512"):
        status, body = _get(port, f"/thumb/3?s={s}")
        assert status == 200 and body[:2] == b"\xff\xd8", s  # a JPEG
    status, _ = _get(port, "/thumb/3?s=513")
    assert status == 400  # used to be clamped silently


@pytest.mark.parametrize("kwargs,named", [
    ({"port": 99999}, "port 99999"), ({"port": -1}, "port -1"), ({"port": "abc"}, "port abc"),
    ({"port": 5006.5}, "port 5006.5"), ({"port": True}, "port True"),
    ({"max_points": 0}, "max_points 0"), ({"max_points": "many"}, "max_points many"),
    ({"allow_origin": ["tunnel:notaport"]}, "allow_origin 'tunnel:notaport'"),
    ({"allow_origin": ["http://tunnel/x"]}, "allow_origin 'http://tunnel/x'"),
    ({"host": "192.0.2.1", "port": 0}, "host 192.0.2.1"),  # TEST-NET: not an address of this machine
    ({"host": "", "port": 0}, "host ''"),
])
def test_options_are_checked_before_the_run_is_loaded(tiny_run_dir, no_load, kwargs, named):
    from raregal.views.explore import make_server

    with pytest.raises(InputError) as err:
        make_server(tiny_run_dir, **kwargs)
    assert str(err.value).startswith(named + ":"), str(err.value)


def test_port_in_use_is_named_before_the_run_is_loaded(tiny_run_dir, tmp_path, no_load):
    from raregal.views.explore import make_server

    with socket.socket() as other:  # another program on the port
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(InputError, match=rf"^port {port}: already in use by another program.*port 0"):
            make_server(tiny_run_dir, port=port)
        # a missing run directory is reported first, before any port is bound
        with pytest.raises(InputError, match="not a run directory"):
            make_server(tmp_path / "no_run", port=port)


def test_cli_bad_options_are_one_line_naming_the_flag(tiny_run_dir, no_load, capsys):
    from raregal.cli import main

    for flags, named in [(["--port", "99999"], "--port 99999: "), (["--port", "abc"], "--port abc: "),
                         (["--max-points", "0"], "--max-points 0: "),
                         (["--allow-origin", "a:b:c"], "--allow-origin 'a:b:c': ")]:
        assert main(["explore", str(tiny_run_dir), "--no-browser", *flags]) == 2, flags
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and named in err and "Traceback" not in err, err


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_loopback_is_served_and_named_in_brackets(tiny_run_dir):
    server, url, thread = _start(tiny_run_dir, host="::1")
    try:
        port = server.port
        assert url == f"http://[::1]:{port}/"
        assert _get(port, "/cluster/0.csv", f"[::1]:{port}", "::1")[0] == 200
        assert _get(port, "/cluster/0.csv", f"evil.example:{port}", "::1")[0] == 403
    finally:
        _stop(server, thread)
