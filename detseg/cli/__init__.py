"""The ``detseg`` command line: a thin layer over the Python API.

Each module in this package adds its subcommands with ``register(subparsers)``; a subcommand sets
``func`` (called with the parsed arguments, returns an exit code) through ``set_defaults``. Heavy
imports stay inside those functions so that ``detseg --help`` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from detseg import __version__


class UserError(Exception):
    """A problem with the user's input: printed as one clear line, exit code 2."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a multi-line message from a library is joined with ' | ')."""
    text = " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detseg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"detseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(func(args) or 0)
    except (UserError, OSError, ValueError) as exc:
        # Errors raised for bad input carry the file and the field; show them without a traceback
        # (OSError: a file that cannot be read or written, e.g. a folder where a file should be).
        print(f"detseg {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"detseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
