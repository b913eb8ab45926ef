"""Errors raregal reports to its users.

Every problem with a user's input (a malformed table, an unknown config key, an unreadable
file) raises :class:`InputError` with a message that names the column, key, id or path at
fault. The CLI prints such errors as one line and exits with status 2, without a traceback.

Errors about an argument are written in Python's terms and say which one with ``param``
(``InputError("out_dir /x: is a file", param="out_dir")``); the command line shows the flag
instead (``--out /x: is a file``), see :func:`in_cli_terms`.
"""

import errno
import os
import re


class RaregalError(Exception):
    """Base class of the errors raregal raises on purpose."""


class InputError(RaregalError, ValueError):
    """A table, catalog, config or file given by the user cannot be used as it is.

    ``param``: the Python parameter at fault (or a tuple of them), when there is one; its name
    appears in the message.
    """

    def __init__(self, message: str = "", param: str | tuple[str, ...] | None = None):
        super().__init__(message)
        self.param = param


def in_cli_terms(err: Exception, flags: dict[str, str]) -> str:
    """The message of ``err`` with its parameter's name replaced by the command-line flag.

    ``flags`` maps Python parameter names to flags (``{"out_dir": "--out"}``); ``name=value``
    becomes ``--flag value``. Messages of errors without a known ``param`` are returned as they are.
    """
    text = str(err)
    params = getattr(err, "param", None) or ()
    for param in (params,) if isinstance(params, str) else params:
        flag = flags.get(param)
        if flag:
            # a whole word only: not part of another name or of a path (/data/out/reps.parquet)
            text = re.sub(rf"(?<![\w\-/.]){re.escape(param)}=", f"{flag} ", text)
            text = re.sub(rf"(?<![\w\-/.]){re.escape(param)}(?![\w\-/])", flag, text)
    return text


#: Errors of writing a file that are the machine's, not raregal's: each gets one line saying what.
WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full: free some space and run the same command again",
    errno.EDQUOT: "the disk quota is used up: free some space and run the same command again",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.EACCES: "no permission to write there: write somewhere else",
    errno.EPERM: "no permission to write there: write somewhere else",
    errno.ENAMETOOLONG: "a file name is too long: use a shorter name or folder",
}


def write_failure(err: OSError) -> str | None:
    """One line for an ``OSError`` of writing (full disk, read-only, permission, name too long), or None.

    It names the file (the final name of an atomic write, see :func:`raregal.atomic.atomic_path`)
    and says that what raregal wrote before is kept: every output is written atomically, so a
    failed write leaves the previous file (or none) and long runs resume from their finished parts.
    """
    hint = WRITE_ERRNOS.get(err.errno)
    if hint is None:
        return None
    where = os.fsdecode(err.filename) if err.filename is not None else "a file"
    writing = getattr(err, "raregal_writing", False) or err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
    if not writing:  # a name too long, a permission: it may be an input; do not claim it was a write
        return f"cannot read or write {where}: {err.strerror or os.strerror(err.errno)}"
    return (f"cannot write {where}: {err.strerror or os.strerror(err.errno)}; {hint}. Nothing finished "
            "before was lost (files are written whole or not at all; long runs resume)")
