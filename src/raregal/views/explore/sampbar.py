"""The explorer's SAMP buttons: send the lasso selection or the shown cluster to TOPCAT, Aladin, ...; point sky viewers.

A table is offered as a VOTable at the explorer's own ``/votable/<token>.vot``
(:class:`~raregal.views.explore.handlers.VOTableHandler`) and its URL is sent in a
``table.load.votable`` message (:mod:`raregal.views.samp`); the receiving application fetches it
from this machine. Sending runs in a thread, so the server keeps answering (the application's
fetch included) while it waits for the applications' replies; the outcome, a missing hub
included, is one line in the page.
"""

from __future__ import annotations

import logging
import threading
from html import escape

import numpy as np

from raregal.views import samp

log = logging.getLogger("raregal")


def send_rows(data, rows: np.ndarray, name: str, base_url: str, frame=None) -> str:
    """Send ``rows`` of ``data`` as a table named ``name`` (their run columns, or ``frame``: one row per
    row of ``rows``); returns the outcome in words."""
    rows = np.asarray(rows, np.int64)
    if not len(rows):
        return "Nothing to send: select galaxies with the lasso first."
    token = data.remember(rows, name, frame)
    data.votable(token)  # written now, so the application's fetch is answered at once
    try:
        took = samp.send_table(f"{base_url.rstrip('/')}/votable/{token}.vot", name, table_id=f"raregal-{token}")
    except samp.SampUnavailable as err:
        return f"Not sent: {err}."
    return f"Sent {name} ({len(rows):,} galaxies) to {', '.join(took)}."


def point_at_row(data, row: int | None) -> str:
    """Ask sky viewers to centre on galaxy ``row``; returns the outcome in words."""
    if row is None:
        return "Click a galaxy first."
    ra, dec = float(data.ra[row]), float(data.dec[row])
    if not (np.isfinite(ra) and np.isfinite(dec)):
        return f"{data.ids[row]} has no sky position."
    try:
        took = samp.point_at(ra, dec)
    except samp.SampUnavailable as err:
        return f"Not sent: {err}."
    return f"{', '.join(took)} pointed at {data.ids[row]} ({ra:.5f}, {dec:+.5f})."


def _in_thread(doc, div, busy: str, work) -> None:
    """Show ``busy``, run ``work()`` in a thread, then show the text it returns (errors as one line too)."""
    div.text = escape(busy)

    def target():
        try:
            text = work()
        except Exception as err:  # noqa: BLE001 - the page gets a line, the log the traceback
            log.exception("explore: SAMP send failed")
            text = f"SAMP failed: {err}"
        doc.add_next_tick_callback(lambda: setattr(div, "text", escape(text)))

    threading.Thread(target=target, name="raregal-samp", daemon=True).start()


def samp_controls(doc, data, base_url: str, current: dict, width: int = 580):
    """Buttons "Send selection to SAMP", "Send cluster to SAMP", "Point sky viewers here" and their message line.

    ``current`` is updated by the explorer: ``rows`` (the lasso selection), ``cluster`` (the
    cluster shown), ``row`` (the galaxy shown).
    """
    from bokeh.layouts import column, row
    from bokeh.models import Button, Div

    name = data.run.path.resolve().name
    message = Div(text="", name="samp_message", width=width,
                  styles={"font-size": "12.5px", "color": "#5b6472", "min-height": "18px"})
    send_sel = Button(label="Send selection to SAMP", name="samp_selection", width=175)
    send_cl = Button(label="Send cluster to SAMP", name="samp_cluster", width=165)
    point = Button(label="Point sky viewers here", name="samp_point", width=175, disabled=not data.has_sky)

    def on_selection():
        rows = current.get("rows")
        rows = np.zeros(0, np.int64) if rows is None else rows
        _in_thread(doc, message, f"Sending {len(rows):,} galaxies over SAMP…",
                   lambda: send_rows(data, rows, f"{name} selection", base_url))

    def on_cluster():
        k = current.get("cluster")
        if k is None:
            message.text = "Pick a cluster in the table (or click a galaxy in one) first."
            return
        _in_thread(doc, message, f"Sending cluster {k} over SAMP…",
                   lambda: send_rows(data, data.members(k), f"{name} cluster {k}", base_url))

    def on_point():
        r = current.get("row")
        _in_thread(doc, message, "Pointing SAMP sky viewers…", lambda: point_at_row(data, r))

    send_sel.on_click(on_selection)
    send_cl.on_click(on_cluster)
    point.on_click(on_point)
    return column(row(send_sel, send_cl, point), message)
