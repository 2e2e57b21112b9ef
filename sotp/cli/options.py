"""Options shared by several commands, registered the same way everywhere.

Commands with sub-actions (``sotp token create``, ``sotp backup run``...) accept their common options
both before and after the action (``sotp token --config x create`` and ``sotp token create --config x``):
:func:`shared_options` registers them on the command and returns a parent parser for the actions.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def config_options(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--data-dir`` (no defaults here: :func:`sotp.config.load_config` supplies them)."""
    parser.add_argument("--config", metavar="sotp.yml",
                        help="configuration file; relative paths in it are relative to its directory")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="where the SQLite store and tokens file live by default "
                        "(default: data/ beside --config, else ./data)")


def check_option(parser: argparse.ArgumentParser) -> None:
    """``--check``: validate the configuration as ``sotp check config`` does, print the result, exit."""
    parser.add_argument("--check", action="store_true",
                        help="check the configuration (as 'sotp check config' does) and exit: 0 valid, 2 not")


def shared_options(
    parser: argparse.ArgumentParser, add: Callable[[argparse.ArgumentParser], None]
) -> argparse.ArgumentParser:
    """Register ``add``'s options on ``parser`` and return a parent parser carrying them for sub-actions.

    The parent's options default to "not given" (argparse.SUPPRESS), so a value given before the action is
    kept and one given after it wins. ``add`` must not pass ``default=`` (absent options read as None).
    """
    add(parser)
    parent = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    add(parent)
    return parent


__all__ = ["check_option", "config_options", "shared_options"]
