"""The ``hwprune`` command line.

Each stage of the data flow owns its sub-commands in ``hwprune/<stage>/cli.py`` through a
``register(subparsers)`` function; this module only collects them, so the CLI, ``train.py`` and the tests
call the same library functions.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

# Order follows the data flow: measure -> predict -> staircase/prune.
_STAGE_CLIS: tuple[str, ...] = ("hwprune.measure.cli", "hwprune.predict.cli", "hwprune.prune.cli")


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every stage's sub-commands registered."""
    parser = argparse.ArgumentParser(prog="hwprune", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod_name in _STAGE_CLIS:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as err:  # a stage that is not installed yet must not break the others
            if err.name != mod_name:
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hwprune`` console script. Returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"hwprune {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
