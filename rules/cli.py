"""``sotp rules check FILE...`` and ``sotp rules test FILE...`` (promtool-compatible), and ``sotp ruler``."""

from __future__ import annotations

import argparse
import asyncio


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    check = sub.add_parser("check", help="validate rule files (as promtool check rules)")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--lint", default="duplicate-rules", choices=["all", "duplicate-rules", "none"],
                       help="linting checks to apply (default duplicate-rules; none disables linting)")
    check.add_argument("--lint-fatal", action="store_true", help="make lint errors exit with code 3")
    test = sub.add_parser("test", help="run rule unit tests (as promtool test rules)")
    test.add_argument("files", nargs="+", metavar="TEST_FILE")


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        from rules.check import check_files

        return check_files(args.files, args.lint, args.lint_fatal)
    from rules.unittest import run_unit_tests

    return asyncio.run(run_unit_tests(args.files))
