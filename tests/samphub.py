"""astropy's own SAMP hub, started in the test process, and an application on it that records what it gets.

The hub's lock file lies in a test folder named by ``SAMP_HUB`` (``std-lockurl:file://...``), and
``HOME`` points at that folder while the hub starts, so a test never reads, writes or cleans up
the user's ``~/.samp`` or ``~/.samp-1`` (astropy removes lock files of dead hubs it finds there).
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path


def _samp():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*astropy.samp.*deprecated", category=Warning)
        import astropy.samp as samp
    return samp


class Receiver:
    """A SAMP application that accepts tables and sky positions, and remembers each message."""

    MTYPES = ("table.load.votable", "coord.pointAt.sky")

    def __init__(self, name: str = "test receiver"):
        samp = _samp()
        self.messages: list[tuple[str, dict]] = []
        self._got = threading.Condition()
        self.client = samp.SAMPIntegratedClient(name=name)
        self.client.connect(pool_size=1)
        for mtype in self.MTYPES:
            self.client.bind_receive_call(mtype, self._on_call)
            self.client.bind_receive_notification(mtype, self._on_notification)

    def _on_call(self, private_key, sender_id, msg_id, mtype, params, extra):
        self.client.reply(msg_id, {"samp.status": "samp.ok", "samp.result": {}})
        self._on_notification(private_key, sender_id, mtype, params, extra)

    def _on_notification(self, private_key, sender_id, mtype, params, extra):
        with self._got:
            self.messages.append((mtype, dict(params)))
            self._got.notify_all()

    def wait(self, mtype: str, timeout: float = 20.0) -> dict:
        """The params of the first message of ``mtype`` (waiting for it up to ``timeout`` seconds)."""
        end = time.monotonic() + timeout
        with self._got:
            while True:
                for kind, params in self.messages:
                    if kind == mtype:
                        return params
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {mtype} message within {timeout} s; got {self.messages}")
                self._got.wait(left)

    def close(self) -> None:
        self.client.disconnect()


def hub_env(folder: Path) -> dict[str, str]:
    """The environment by which clients find the test hub (and nothing in the user's home)."""
    return {"HOME": str(folder), "SAMP_HUB": "std-lockurl:" + (Path(folder) / "samp-lock").as_uri()}


@contextmanager
def running_hub(folder: Path, receiver: bool = True):
    """Start a hub (lock file in ``folder``) and, with ``receiver``, a :class:`Receiver`; yield the receiver.

    ``os.environ`` holds :func:`hub_env` while the block runs (restored afterwards).
    """
    samp = _samp()
    Path(folder).mkdir(parents=True, exist_ok=True)
    env = hub_env(folder)
    saved = {k: os.environ.get(k) for k in env}
    internet = samp.conf.use_internet
    os.environ.update(env)
    samp.conf.use_internet = False  # or every client probes google.com for its host name
    hub = samp.SAMPHubServer(web_profile=False, mode="multiple", pool_size=1)
    rec = None
    try:
        hub.start()
        rec = Receiver() if receiver else None
        yield rec
    finally:
        if rec is not None:
            rec.close()
        hub.stop()
        samp.conf.use_internet = internet
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
