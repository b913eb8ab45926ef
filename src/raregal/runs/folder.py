"""Who owns an output folder, and who is writing it: the ownership marker and the write lock.

raregal replaces only what it made. Every folder it writes (a search's run folder, a report
folder) gets a small marker file, ``.raregal.json`` (``{"kind": "run"|"report", ...}``), written
before anything else, so a later command can tell its own folders from a user's (kinds:
``run``, ``report``, ``cutouts``, ``finetune``):

* :func:`check_output_folder` decides, before any expensive work, whether a folder may be
  written: a new or empty folder may; a raregal folder of the same kind may when the caller
  allows it (``overwrite``); a file, a user's folder with files in it, a folder of another
  kind, or a folder that is (or holds) the command's own input never may. It raises
  :class:`~raregal.errors.InputError` naming the flag and saying what to do.
* :class:`WriteLock` holds ``.raregal.lock`` in the folder while a command writes it. A second
  writer fails at once and is told who holds the lock (pid, host, command, start time). The lock
  is an advisory ``flock`` on that file, so the kernel releases it when its holder dies, however
  it dies; a lock file left by a killed process is then recognised as stale by its pid and taken
  over with a message.
* :func:`remove_outputs` deletes a previous raregal output's own files (and nothing else) before
  a rerun writes new ones, so stale files (an old report, old ``similar/`` tables) never stand
  beside new results.

Folders written by raregal before markers existed (a run's ``summary.json`` with ``parameters``
beside ``clusters.parquet``; a report's ``report.json`` beside ``index.html``) are recognised too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import shutil
import socket
import sys
import time
from pathlib import Path

from raregal.errors import InputError

log = logging.getLogger("raregal")

MARKER = ".raregal.json"
LOCK = ".raregal.lock"
#: The finished stages of a search not yet written (raregal.discovery.stages): a folder holding only
#: these (and the marker) is an interrupted run, which the same command resumes without --overwrite.
STAGES = ".stages"
#: What each kind of folder holds that raregal wrote (files, and folders ending in "/"). A run's
#: files are raregal.runs.model's; ``merge_suggestions.csv`` is an earlier raregal's copy of
#: summary.json's merge suggestions, removed so it never stands stale beside a new run.
OUTPUTS = {
    "run": ("clusters.parquet", "condensed_tree.parquet", "summary.json", "config.toml",
            "merge_suggestions.csv", "report/", "similar/"),
    "report": (),  # a report folder is replaced whole (see raregal.views.report)
    "cutouts": ("catalog.parquet", "failed.csv", "cutouts.json", "images/"),  # raregal cutouts
    "finetune": ("reps.parquet", "ranked.csv", "finetune.json", "skipped.csv", "model/"),  # raregal finetune
    "synth": ("catalog.parquet", "synth_config.json", "preview.png", "images/"),  # raregal synth
    "pca": ("pca.json", "explained_variance.png"),  # raregal pca
}
_WHAT = {"run": "a raregal search run", "report": "a raregal report", "cutouts": "a raregal cutouts folder",
         "finetune": "a raregal fine-tuning", "synth": "a raregal synthetic survey", "pca": "a raregal PCA report"}
_HELD: set[Path] = set()  # folders whose lock this process holds


def folder_kind(path: str | os.PathLike) -> str | None:
    """The kind (``"run"``, ``"report"``, ``"cutouts"``, ``"finetune"``) when ``path`` is a folder raregal wrote,
    else None."""
    path = Path(path)
    try:
        kind = json.loads((path / MARKER).read_text()).get("kind")
        if kind in OUTPUTS:
            return kind
    except (OSError, ValueError, AttributeError):
        pass
    return _legacy_kind(path)


def _legacy_kind(path: Path) -> str | None:
    """Folders raregal wrote before it left markers, recognised by their files' contents."""
    try:
        if (path / "clusters.parquet").is_file() and "parameters" in json.loads((path / "summary.json").read_text()):
            return "run"
        if (path / "index.html").is_file() and "n_clusters" in json.loads((path / "report.json").read_text()):
            return "report"
        if (path / "synth_config.json").is_file() and "generator_version" in json.loads(
                (path / "synth_config.json").read_text()):
            return "synth"
        if {"components_for", "input"} <= set(json.loads((path / "pca.json").read_text())):
            return "pca"
    except (OSError, ValueError, TypeError):
        pass
    return None


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def check_output_folder(path: str | os.PathLike, kind: str, *, overwrite: bool = False,
                        inputs: tuple = (), flag: str = "--out") -> Path:
    """Check that ``path`` may become (or be replaced by) a raregal folder of ``kind``.

    Parameters
    ----------
    path : the folder to write.
    kind : ``"run"``, ``"report"``, ``"cutouts"`` or ``"finetune"``.
    overwrite : allow replacing an existing raregal folder of the same kind (a report is always
        derived output, so callers pass True for reports).
    inputs : paths the command reads; the folder may neither be one of them, hold one, nor lie
        inside a folder one of them is.
    flag : the caller's parameter name for ``path`` (``out_dir``), used in errors; the command
        line shows its flag instead (:func:`raregal.errors.in_cli_terms`).

    Returns the path. Nothing is created or changed. Raises InputError saying why not.
    """
    path = Path(path)
    for src in inputs:
        src = Path(src)
        if src.exists() and (_inside(path, src) or _inside(src, path)):
            where = "inside" if _inside(path, src) else "around"
            raise InputError(f"{flag} {path}: the output would go {where} the input {src}; write it to another "
                             "folder", param=flag)
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {path}: is a file, not a folder; give a folder to write into", param=flag)
    if not path.exists():
        _check_creatable(path, flag)
        return path
    found = folder_kind(path)
    rest = [p.name for p in path.iterdir() if p.name not in (MARKER, LOCK) and not (found and p.name == STAGES)]
    if found is None and rest:
        raise InputError(f"{flag} {path}: the folder holds {len(rest)} file(s) raregal did not write "
                         f"(e.g. {', '.join(sorted(rest)[:3])}); raregal never replaces them. "
                         "Give a new or empty folder", param=flag)
    if found is not None and found != kind:
        raise InputError(f"{flag} {path}: the folder is {_WHAT[found]}, not {_WHAT[kind]}; give another folder",
                         param=flag)
    if found == kind and rest and not overwrite:
        raise InputError(f"{flag} {path}: the folder holds {_WHAT[kind]} already; pass overwrite to "
                         "replace it, or give a new folder", param=(flag, "overwrite"))
    return path


def _check_creatable(path: Path, flag: str) -> None:
    """Raise unless the missing folder ``path`` could be made (see :func:`check_writable`)."""
    check_writable(path, flag)


def check_writable(path: str | os.PathLike, flag: str = "--out") -> None:
    """Raise :class:`InputError` unless raregal can write at ``path``: a file made for real (and removed
    at once) in ``path`` when it is a folder, else in its nearest existing parent folder.

    Tried rather than read from permission bits: those do not tell for root, for ``/proc`` or for
    a read-only mount. Called by every output check before any compute.
    """
    path = Path(path)
    parent = path if path.is_dir() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{flag} {path}: cannot be created, {parent} is a file", param=flag)
    try:
        fd, probe = tempfile.mkstemp(prefix=".raregal-probe-", dir=parent)
    except OSError as err:
        raise InputError(f"{flag} {path}: cannot be written, {parent} does not take new files "
                         f"({err.strerror or err}); write somewhere else", param=flag) from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: str | os.PathLike, *, ours, flag: str = "--out", command: str = "raregal",
                      companions: tuple = ()) -> Path:
    """Check, before any compute, that the file ``path`` may be written: not a folder, new or one
    ``ours(path)`` says raregal wrote (a user's file is never replaced), each of ``companions``
    (files written beside it, as ``(path, how to avoid it)``) new unless ``path`` is ours too, and
    writable (:func:`check_writable`). Returns the path; raises InputError saying why not.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a folder; give the file to write", param=flag)
    if path.exists() and not ours(path):
        raise InputError(f"{flag} {path}: the file exists and was not written by `{command}`; raregal never "
                         "replaces it. Give a new file name", param=flag)
    for other, hint in companions:
        if Path(other).exists() and not path.exists():
            raise InputError(f"{flag} {path}: {Path(other).name} would be replaced, which raregal did not write "
                             f"beside this file; give another name or {hint}", param=flag)
    check_writable(path, flag)
    return path


def mark(path: str | os.PathLike, kind: str, command: str) -> None:
    """Write the ownership marker into ``path`` (made if missing)."""
    from raregal import __version__
    from raregal.atomic import write_json

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / MARKER, {"kind": kind, "written_by": command, "raregal_version": __version__})


def remove_outputs(path: str | os.PathLike, kind: str) -> list[str]:
    """Delete the files a previous raregal folder of ``kind`` holds (only those); return their names."""
    path = Path(path)
    gone = []
    for name in OUTPUTS[kind]:
        target = path / name.rstrip("/")
        if name.endswith("/") and target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif not name.endswith("/") and (target.is_file() or target.is_symlink()):
            target.unlink()
        else:
            continue
        gone.append(name)
    if gone:
        log.info("removed the previous run's %s from %s", ", ".join(gone), path)
    return gone


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class WriteLock:
    """``with WriteLock(folder, "raregal search"):`` — hold the folder's write lock or fail at once.

    The lock is ``flock`` on ``folder/.raregal.lock`` (released by the kernel when the holder
    exits or is killed); the file records the holder (pid, host, command, start time) for the
    message a second writer gets. The folder is made if missing. Where ``fcntl`` is missing
    (Windows) the lock is only advisory text, checked by pid.
    """

    def __init__(self, folder: str | os.PathLike, command: str):
        self.folder = Path(folder)
        self.command = command
        self._fd = None
        self._nested = False

    def __enter__(self) -> "WriteLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        key = self.folder.resolve()
        if key in _HELD:  # this process holds it already (a search building its report)
            self._nested = True
            return self
        self._acquire()
        _HELD.add(key)
        return self

    def _acquire(self) -> None:
        path = self.folder / LOCK
        while True:  # the holder unlinks the file on exit: lock the file that is at the path now
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            holder = self._read(fd)
            if not self._try_lock(fd, holder):
                os.close(fd)
                raise InputError(f"{self.folder} is being written by another raregal process ({_describe(holder)}); "
                                 "wait for it to finish or give another folder")
            try:
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            if holder.get("pid") and holder.get("pid") != os.getpid():
                log.warning("%s: taking over a stale lock left by pid %s (%s), which is no longer running",
                            self.folder, holder.get("pid"), holder.get("command", "?"))
            me = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
        except BaseException as err:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)  # ours (we held its lock): no empty lock file is left behind
            if isinstance(err, OSError) and err.filename is None:
                err.filename = str(path)  # a full disk names the lock file, not "a file"
                err.raregal_writing = True
            raise
        self._fd = fd

    @staticmethod
    def _read(fd: int) -> dict:
        try:
            return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (ValueError, UnicodeDecodeError):
            return {}

    @staticmethod
    def _try_lock(fd: int, holder: dict) -> bool:
        if sys.platform == "win32":  # pragma: no cover - no flock: trust the recorded pid
            pid = holder.get("pid")
            return not (pid and holder.get("host") == socket.gethostname() and _pid_alive(int(pid)))
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def __exit__(self, *exc) -> None:
        if self._nested or self._fd is None:
            return
        _HELD.discard(self.folder.resolve())
        try:
            (self.folder / LOCK).unlink(missing_ok=True)  # a clean exit leaves no lock file behind
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def _describe(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    return (f"pid {holder.get('pid')} on {holder.get('host')}, `{holder.get('command')}`, "
            f"started {holder.get('started')}")
