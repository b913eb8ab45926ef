"""One validation layer: parameter constraints checked in raregal's own terms, before any compute.

Every entry point that takes settings (:class:`raregal.SearchConfig` and ``--config`` files,
:class:`raregal.RareClassSearch`, :class:`raregal.GuidedSearch`, the CLI through them) checks
them with :func:`check_params` against a table of constraints, so a bad value fails with an
:class:`~raregal.errors.InputError` that names the key (``param=``, shown as the flag on the
command line) and says what is allowed, never with a library's own exception.

Why not scikit-learn's ``_parameter_constraints``: it lives in the private module
``sklearn.utils._param_validation`` (no stability promise), raises its own exception type, and
knows nothing of raregal's meanings (a fraction, a seed a run's TOML can hold). The constraints
here are a few small classes; each says what it accepts in words, for the message.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from raregal.errors import InputError

__all__ = ["Integer", "Number", "Fraction", "Options", "Text", "PathLike", "Boolean", "AnyOf", "plain", "Seed", "check_params", "check_value"]


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, (bool, np.bool_)) and bool(np.isfinite(value))


class Constraint:
    """What a parameter may be; ``none_ok`` also allows None (meaning: off, or the default)."""

    def __init__(self, none_ok: bool = False):
        self.none_ok = none_ok

    def accepts(self, value) -> bool:
        return (value is None and self.none_ok) or (value is not None and self._accepts(value))

    def _accepts(self, value) -> bool:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def describe(self) -> str:
        text = self._describe()
        return f"{text} or None" if self.none_ok else text

    def _describe(self) -> str:  # pragma: no cover
        raise NotImplementedError


class Integer(Constraint):
    """A whole number in [low, high] (``high`` None: no upper bound)."""

    def __init__(self, low: int | None = None, high: int | None = None, *, none_ok: bool = False):
        super().__init__(none_ok)
        self.low, self.high = low, high

    def _accepts(self, value) -> bool:
        return _is_int(value) and (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def _describe(self) -> str:
        if self.low == 1 and self.high is None:
            return "a positive integer"
        if self.high is None:
            return f"a whole number >= {self.low}" if self.low is not None else "a whole number"
        return f"a whole number in {self.low}..{self.high}"


class Number(Constraint):
    """A finite real number in [low, high] (either bound None: none on that side; ``above``: > low)."""

    def __init__(self, low: float | None = None, high: float | None = None, *, above: bool = False,
                 none_ok: bool = False, inf_ok: bool = False):
        super().__init__(none_ok)
        self.low, self.high, self.above, self.inf_ok = low, high, above, inf_ok

    def _accepts(self, value) -> bool:
        if self.inf_ok and isinstance(value, Real) and value == float("inf"):
            return self.high is None
        if not _is_number(value) or (self.high is not None and value > self.high):
            return False
        return self.low is None or (value > self.low if self.above else value >= self.low)

    def _describe(self) -> str:
        if self.high is None and self.low is not None:
            return f"a number {'>' if self.above else '>='} {self.low:g}"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"a number in {'(' if self.above else '['}{low}, {high}]"


class Fraction(Number):
    """A fraction in [0, 1] (a vote fraction, a cut on one, a share of a sample); ``slack`` above 1
    lets a cut just past 1 mean "no cut" (configs of earlier versions hold 1.0001)."""

    def __init__(self, *, none_ok: bool = False, slack: float = 0.0):
        super().__init__(0.0, 1.0 + slack, none_ok=none_ok)

    def _describe(self) -> str:
        return "a fraction in [0, 1]"


class Options(Constraint):
    """One of a fixed set of strings."""

    def __init__(self, *choices: str, none_ok: bool = False):
        super().__init__(none_ok)
        self.choices = tuple(choices)

    def _accepts(self, value) -> bool:
        return isinstance(value, str) and value in self.choices

    def _describe(self) -> str:
        return f"one of {self.choices}"


class Text(Constraint):
    """Any string (a column name, a prefix)."""

    def _accepts(self, value) -> bool:
        return isinstance(value, str)

    def _describe(self) -> str:
        return "a string"


class PathLike(Constraint):
    """A path: a string or an ``os.PathLike``."""

    def _accepts(self, value) -> bool:
        import os

        return isinstance(value, (str, os.PathLike))

    def _describe(self) -> str:
        return "a path"


class Boolean(Constraint):
    """True or False."""

    def _accepts(self, value) -> bool:
        return isinstance(value, (bool, np.bool_))

    def _describe(self) -> str:
        return "True or False"


class Seed(Constraint):
    """A seed: a whole number in 0..2**32-1 (what every library's seed and a run's TOML take).

    ``generator_ok``: also None or a ``numpy.random.RandomState`` (scikit-learn's ``random_state``
    convention, for estimators).
    """

    HIGH = 2**32 - 1

    def __init__(self, *, generator_ok: bool = False, none_ok: bool = False):
        super().__init__(none_ok=generator_ok or none_ok)
        self.generator_ok = generator_ok

    def _accepts(self, value) -> bool:
        if self.generator_ok and isinstance(value, np.random.RandomState):
            return True
        return _is_int(value) and 0 <= value <= self.HIGH

    def describe(self) -> str:
        text = f"a whole number in 0..{self.HIGH}"
        if self.generator_ok:
            return f"{text}, None or a numpy RandomState"
        return f"{text} or None" if self.none_ok else text


class AnyOf(Constraint):
    """Whatever one of ``constraints`` accepts."""

    def __init__(self, *constraints: Constraint):
        super().__init__(any(c.none_ok for c in constraints))
        self.constraints = constraints

    def _accepts(self, value) -> bool:
        return any(c.accepts(value) for c in self.constraints)

    def _describe(self) -> str:
        return " or ".join(c.describe() for c in self.constraints)

    def describe(self) -> str:
        return self._describe()


def plain(value):
    """A numpy scalar as the Python value it holds (what TOML, JSON and every library take); else ``value``."""
    return value.item() if isinstance(value, np.generic) else value


def check_value(name: str, value, constraint: Constraint, where: str | None = None) -> None:
    """Raise :class:`InputError` unless ``constraint`` accepts ``value``.

    The message is ``name=value: must be ...`` with ``param=name`` (the command line shows the
    flag: ``--seed -1: must be ...``); with ``where`` (a file the value came from) it starts with
    the file instead and names the key as written there.
    """
    if constraint.accepts(value):
        return
    if where is None:
        raise InputError(f"{name}={value!r}: must be {constraint.describe()}", param=name)
    raise InputError(f"{where}: {name} = {value!r}: must be {constraint.describe()}")


def check_params(values: dict, constraints: dict[str, Constraint], where: str | None = None) -> None:
    """Check every ``values[name]`` that has a constraint, in the table's order (the first bad one raises)."""
    for name, constraint in constraints.items():
        if name in values:
            check_value(name, values[name], constraint, where)
