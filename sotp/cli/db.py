"""``sotp db migrate``: create or upgrade the storage schema (idempotent; run before a rolling upgrade)."""

from __future__ import annotations

import argparse
import asyncio

from sotp.config import load_config
from sotp.storage import open_storage


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="<action>")
    p = sub.add_parser("migrate", help="apply pending schema migrations and exit")
    p.add_argument("--config", help="sotp.yml (server.storage)")
    p.add_argument("--storage", help="storage URL (overrides server.storage)")


async def _migrate(url: str) -> str:
    # Opening a backend applies its versioned migrations (SQLite: CREATE IF NOT EXISTS; PostgreSQL:
    # numbered migrations under an advisory lock). Returns the PostgreSQL mode, if any.
    storage = open_storage(url)
    await storage.open()
    await storage.close()
    return str(getattr(storage, "mode", ""))


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    url = args.storage or config.server.storage
    mode = asyncio.run(_migrate(url))
    shown = {"timescaledb": " (TimescaleDB hypertable)", "partitions": " (native partitions)"}.get(mode, "")
    print(f"sotp db migrate: schema of {url.split('@')[-1]} is up to date{shown}")
    return 0
