"""The ``hwprune`` command line.

Each stage of the data flow owns its sub-commands in ``hwprune/<stage>/cli.py`` through a
``register(subparsers)`` function; this module only collects them, so the CLI, ``train.py`` and the tests
call the same library functions. Building the parser imports no torch, scikit-learn or TVM: each command
imports what it needs when it runs, so ``hwprune --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "catalogue", "main"]

# Order follows the data flow: measure -> predict -> staircase/prune.
_STAGE_CLIS: tuple[str, ...] = ("hwprune.measure.cli", "hwprune.predict.cli", "hwprune.prune.cli")

_DESCRIPTION = """\
hwprune: prune a CNN's channels to a latency budget on a target (cuDNN, ACL, TVM, this CPU).

workflow: measure -> fit -> report -> prune
  1. measure  time the model's conv layer space on the target     -> table.csv (+ .json sidecar)
  2. fit      fit a latency predictor on that table                -> predictor.skops
  3. report   score the predictor (held-out CV scores, staircases) -> text / plots
  4. prune    plan and apply a prune to a budget, offline          -> the plan (+ pruned.pt)
  (in a Lightning run, the HardwareAwarePruning callback does step 4 while fine-tuning)
"""

_EXAMPLE = """\
example:
  hwprune measure --target cpu_torch --model small_resnet --input 1,1,28,28 --step 8 --out t.csv
  hwprune fit t.csv --out p.skops
  hwprune report p.skops t.csv
  hwprune prune --predictor p.skops --table t.csv --latency-ratio 0.5

models:  {models}
targets: {targets}
         (a target is hwprune/conf/device/<name>.yaml in the package, or any YAML path in that format)
`hwprune COMMAND --help` shows a command's options and their defaults.
"""


def catalogue(kind: str) -> list[str]:
    """The names of the shipped configs of one Hydra group (``"model"`` or ``"device"``) in ``hwprune/conf``.

    Args:
        kind: ``"model"`` or ``"device"`` (any group of the package's config tree).

    Returns:
        Sorted names (file stems); empty when the group does not exist.

    Example:
        >>> "cpu_torch" in catalogue("device")
        True
    """
    # The config tree is package data (importlib.resources): an installed wheel lists it from any folder.
    # hwprune.measure.targets imports only the standard library at module level, so --help stays fast.
    from hwprune.measure.targets import CONF_DIR

    group = CONF_DIR.joinpath(kind)
    if not group.is_dir():
        return []
    return sorted(f.name.rsplit(".", 1)[0] for f in group.iterdir() if f.name.endswith(".yaml"))


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Append ``(default: X)`` where X says something (not None/False, not already in the help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action) or text


class _Parser(argparse.ArgumentParser):
    """Sub-command parsers show each option's default."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every stage's sub-commands registered.

    Returns:
        The parser; its help states the workflow with an example, and lists the models and targets.

    Example:
        >>> build_parser().prog
        'hwprune'
    """
    parser = argparse.ArgumentParser(
        prog="hwprune",
        description=_DESCRIPTION,
        epilog=_EXAMPLE.format(
            models=", ".join(catalogue("model")) or "see hwprune.models.MODEL_NAMES",
            targets=", ".join(catalogue("device")) or "see hwprune/conf/device",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
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
