"""``sotp db migrate``: create or upgrade the storage schema (idempotent; run before a rolling upgrade), and
``--convert-to``: switch a PostgreSQL schema between a TimescaleDB hypertable and native partitions."""

from __future__ import annotations

import argparse
import asyncio

from sotp.cli.options import config_options, shared_options
from sotp.config import load_config
from sotp.storage import open_storage


def _options(parser: argparse.ArgumentParser) -> None:
    config_options(parser)
    parser.add_argument("--storage", help="storage URL (overrides server.storage)")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    common = shared_options(parser, _options)
    sub = parser.add_subparsers(dest="action", required=True, metavar="<action>")
    p = sub.add_parser("migrate", parents=[common], help="apply pending schema migrations and exit")
    p.add_argument(
        "--convert-to", choices=("timescaledb", "partitions"),
        help="PostgreSQL: rebuild the samples table as a TimescaleDB hypertable or as native partitions, keeping "
        "every sample (stop every SOTP service of the schema first; one transaction)",
    )


async def _migrate(url: str) -> str:
    # Opening a backend applies its versioned migrations (SQLite: CREATE IF NOT EXISTS; PostgreSQL:
    # numbered migrations under an advisory lock). Returns the PostgreSQL mode, if any.
    storage = open_storage(url)
    await storage.open()
    await storage.close()
    return str(getattr(storage, "mode", ""))


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.data_dir)
    url = args.storage or config.server.storage
    if args.convert_to:
        from sotp.storage.postgres import migrate

        mode, _ = asyncio.run(migrate(url, convert_to=args.convert_to))
    else:
        mode = asyncio.run(_migrate(url))
    shown = {"timescaledb": " (TimescaleDB hypertable)", "partitions": " (native partitions)"}.get(mode, "")
    print(f"sotp db migrate: schema of {url.split('@')[-1]} is up to date{shown}")
    return 0
