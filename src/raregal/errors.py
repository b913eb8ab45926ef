"""Errors raregal reports to its users.

Every problem with a user's input (a malformed table, an unknown config key, an unreadable
file) raises :class:`InputError` with a message that names the column, key, id or path at
fault. The CLI prints such errors as one line and exits with status 2, without a traceback.

Errors about an argument are written in Python's terms and say which one with ``param``
(``InputError("out_dir /x: is a file", param="out_dir")``); the command line shows the flag
instead (``--out /x: is a file``), see :func:`in_cli_terms`.
"""

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
