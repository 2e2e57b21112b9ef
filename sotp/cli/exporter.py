"""``sotp exporter {host,snmp,icmp}``: dispatches to the chosen exporter's own command module."""

from __future__ import annotations

import argparse

from sotp.cli import EXPORTERS, load_command


def configure_parser(parser: argparse.ArgumentParser) -> None:
    # A positional + REMAINDER rather than subparsers: argparse's REMAINDER inside a subparser does not
    # capture a first argument that looks like a flag ("sotp exporter host --listen ..." failed).
    helps = "; ".join(f"{name}: {cmd.help}" for name, cmd in EXPORTERS.items())
    parser.add_argument("exporter", choices=list(EXPORTERS), metavar="<exporter>", help=helps)
    # Flags belong to the exporter module; they are parsed after it is imported.
    parser.add_argument("exporter_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    cmd = EXPORTERS[args.exporter]
    module = load_command(cmd)
    parser = argparse.ArgumentParser(prog=f"sotp exporter {args.exporter}", description=cmd.help)
    module.configure_parser(parser)
    rc: int = module.run(parser.parse_args(args.exporter_args))
    return rc
