"""``raregal`` command line: a thin layer over the Python API.

Each sub-command lives in its own module ``raregal.cli.<name>`` with a ``register(subparsers)``
function that adds its parser and sets ``func``; heavy libraries are imported inside ``func``
so ``raregal --help`` stays fast. User errors (:class:`raregal.errors.InputError`) print one
line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from raregal.errors import RaregalError, in_cli_terms, write_failure
from raregal.timing import setup_logging

#: Sub-commands in pipeline order: data -> model -> representations -> search -> look.
COMMANDS = ["synth", "cutouts", "train", "pca", "embed", "search", "report", "explore", "similar", "guide", "finetune",
            "evaluate", "demo"]


def build_parser() -> argparse.ArgumentParser:
    from raregal import __version__

    parser = argparse.ArgumentParser(
        prog="raregal",
        description="Find rare, visually distinctive classes of galaxies in survey images.",
    )
    parser.add_argument("--version", action="version", version=f"raregal {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:  # every command is built in: a missing module is a broken install, and says so
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _numba_cache() -> None:
    """Keep numba's compiled UMAP/HDBSCAN kernels between runs, even where site-packages is read-only."""
    if "NUMBA_CACHE_DIR" not in os.environ:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(base, "raregal", "numba")


def _flags(parser: argparse.ArgumentParser, args) -> dict[str, str]:
    """Python parameter name -> the flag that sets it, for the command that ran.

    A flag's ``dest`` is its parameter's name; a command whose Python function names one
    differently says so with ``set_defaults(param_flags={"out_dir": "--out"})``.
    """
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = sub.choices[args.command]
    flags = {a.dest: max(a.option_strings, key=len) for a in command._actions if a.option_strings}
    return {**flags, **getattr(args, "param_flags", {})}


def main(argv: list[str] | None = None) -> int:
    _numba_cache()  # before anything imports numba
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except RaregalError as err:
        print(f"raregal {args.command}: error: {in_cli_terms(err, _flags(parser, args))}", file=sys.stderr)
        return 2
    except OSError as err:  # the machine's, not the input's: a full disk, a read-only folder, ...
        line = write_failure(err)
        if line is None:
            raise
        print(f"raregal {args.command}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"raregal {args.command}: interrupted; finished parts are kept, run again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
