"""Send tables and sky positions to TOPCAT, Aladin, DS9 and other SAMP applications (astropy.samp).

SAMP, the Simple Application Messaging Protocol of the Virtual Observatory, lets desktop tools
pass tables and positions to each other through a *hub* (TOPCAT and Aladin each start one when
none is running). raregal sends two messages:

* ``table.load.votable``: a table as a VOTable at a URL (a file, or the explorer's own
  ``http://127.0.0.1:PORT/votable/...``), with ``ra``/``dec`` marked as positions (units ``deg``,
  UCDs ``pos.eq.ra;meta.main``/``pos.eq.dec;meta.main``) so TOPCAT and Aladin plot them on the sky;
* ``coord.pointAt.sky``: a position (degrees, ICRS) for sky viewers to centre on.

Each send connects to the hub, delivers the message to every application that accepts it with
a synchronous call (so it returns only once they have the table, and says which did), and
disconnects. The hub is found the standard way: the ``SAMP_HUB`` environment variable
(``std-lockurl:file:///path/to/lockfile``), else ``~/.samp``. No hub, or no application that
takes the message, is a :class:`SampUnavailable` error with a one-line reason, never a traceback.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from raregal.errors import RaregalError

log = logging.getLogger("raregal")

TABLE = "table.load.votable"
POINT = "coord.pointAt.sky"
#: Seconds an application may take to load a table or move its view before raregal stops waiting.
REPLY_TIMEOUT = 30
_WHAT = {TABLE: "tables (VOTable)", POINT: "sky positions"}
_START = "start TOPCAT or Aladin (either starts a SAMP hub), then send again"


class SampUnavailable(RaregalError):
    """No SAMP hub is running, or no application on it took the message."""


def votable_bytes(frame: pd.DataFrame, name: str = "raregal") -> bytes:
    """``frame`` as a VOTable document named ``name`` (``ra``/``dec`` in degrees with position UCDs)."""
    from raregal.inputs.sky import unit_table

    table = unit_table(frame)
    table.meta["name"] = name
    table.meta["ID"] = re.sub(r"[^A-Za-z0-9_]", "_", name) or "raregal"  # an XML ID: no spaces
    buf = io.BytesIO()
    table.write(buf, format="votable")
    return buf.getvalue()


def write_votable(frame: pd.DataFrame, path: str | os.PathLike, name: str = "raregal") -> Path:
    """Write ``frame`` as a VOTable file atomically; returns its path."""
    from raregal.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(votable_bytes(frame, name))
    return Path(path)


@contextmanager
def _connected():
    """A SAMP client registered with the running hub as "raregal" (unregistered on exit)."""
    SAMPIntegratedClient, conf = _astropy_samp()
    client = SAMPIntegratedClient(name="raregal", description="raregal: rare galaxy classes", callable=False)
    try:
        with conf.set_temp("use_internet", False):  # else astropy probes google.com for a host name
            client.connect(pool_size=1)
    except Exception as err:  # noqa: BLE001 - SAMPHubError, OSError, KeyError (only hubs of other users' modes)
        none = isinstance(err, KeyError) or "Unable to find a running SAMP Hub" in str(err)
        raise SampUnavailable(("no SAMP hub is running" if none else
                               f"cannot connect to the SAMP hub ({_reason(err)})") + f"; {_START}") from None
    try:
        yield client
    finally:
        try:
            client.disconnect()
        except Exception as err:  # noqa: BLE001 - the hub went away meanwhile; nothing to undo
            log.debug("samp: disconnect failed: %s", err)


def _astropy_samp():
    """astropy.samp's client class and configuration.

    astropy 8 deprecates astropy.samp in favour of pyvo.samp, which raregal does not depend on;
    it still works, so the import's deprecation warning is not passed on to raregal's users.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*astropy.samp.*deprecated", category=Warning)
        from astropy.samp import SAMPIntegratedClient, conf
    return SAMPIntegratedClient, conf


def _reason(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    return text if len(text) < 160 else text[:157] + "..."


def _name(client, recipient: str) -> str:
    try:
        return str(client.get_metadata(recipient).get("samp.name") or recipient)
    except Exception:  # noqa: BLE001 - a name is only for messages
        return recipient


def deliver(mtype: str, params: dict, timeout: float = REPLY_TIMEOUT) -> list[str]:
    """Send ``mtype`` with ``params`` to every application on the hub that accepts it; their names.

    Raises SampUnavailable when there is no hub, no application accepts ``mtype``, or none of them
    took it (each one's reason is given). Applications that fail while others succeed are logged.
    """
    with _connected() as client:
        recipients = list(client.get_subscribed_clients(mtype))
        if not recipients:
            raise SampUnavailable(f"a SAMP hub is running, but no application on it accepts "
                                  f"{_WHAT.get(mtype, mtype)}; {_START}")
        took, failed = [], []
        message = {"samp.mtype": mtype, "samp.params": {k: str(v) for k, v in params.items()}}
        for recipient in recipients:
            name = _name(client, recipient)
            try:
                reply = client.call_and_wait(recipient, message, str(max(1, int(timeout))))
            except Exception as err:  # noqa: BLE001 - a timeout or an application that went away
                failed.append(f"{name}: {_reason(err)}")
                continue
            if reply.get("samp.status") == "samp.error":
                failed.append(f"{name}: {(reply.get('samp.error') or {}).get('samp.errortxt', 'error')}")
            else:
                took.append(name)
    if not took:
        raise SampUnavailable(f"no SAMP application took the {mtype} message: " + "; ".join(failed))
    if failed:
        log.warning("samp: %s failed for %s", mtype, "; ".join(failed))
    return took


def send_table(url: str, name: str, table_id: str | None = None, timeout: float = REPLY_TIMEOUT) -> list[str]:
    """Ask SAMP applications to load the VOTable at ``url`` (shown as ``name``); returns who did."""
    return deliver(TABLE, {"url": url, "name": name, "table-id": table_id or name}, timeout)


def point_at(ra: float, dec: float, timeout: float = REPLY_TIMEOUT) -> list[str]:
    """Ask SAMP sky viewers (Aladin, DS9, ...) to centre on (ra, dec) degrees; returns who did."""
    return deliver(POINT, {"ra": f"{float(ra):.6f}", "dec": f"{float(dec):.6f}"}, timeout)


def send_frame(frame: pd.DataFrame, path: str | os.PathLike, name: str) -> tuple[Path, list[str]]:
    """Write ``frame`` as a VOTable at ``path`` and send its ``file://`` URL; returns (path, who took it)."""
    path = write_votable(frame, path, name)
    return path, send_table(Path(path).resolve().as_uri(), name)
