"""Errors raregal reports to its users.

Every problem with a user's input (a malformed table, an unknown config key, an unreadable
file) raises :class:`InputError` with a message that names the column, key, id or path at
fault. The CLI prints such errors as one line and exits with status 2, without a traceback.
"""


class RaregalError(Exception):
    """Base class of the errors raregal raises on purpose."""


class InputError(RaregalError, ValueError):
    """A table, catalog, config or file given by the user cannot be used as it is."""
