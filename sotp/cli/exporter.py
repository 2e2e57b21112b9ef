"""``sotp exporter {host,snmp,icmp}``: dispatches to the chosen exporter's own command module."""

from __future__ import annotations

import argparse

from sotp.cli import EXPORTERS, load_command


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="exporter", metavar="<exporter>", required=True)
    for name, cmd in EXPORTERS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        # Flags belong to the exporter module; they are parsed after it is imported.
        p.add_argument("exporter_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    cmd = EXPORTERS[args.exporter]
    module = load_command(cmd)
    parser = argparse.ArgumentParser(prog=f"sotp exporter {args.exporter}", description=cmd.help)
    module.configure_parser(parser)
    rc: int = module.run(parser.parse_args(args.exporter_args))
    return rc
