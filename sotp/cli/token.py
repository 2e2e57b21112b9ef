"""``sotp token create|list|revoke``: manage the API tokens of ``sotp serve`` (see :mod:`sotp.auth`).

The tokens file is ``--tokens-file``, else ``auth.tokens_file`` from ``--config`` (relative to the file), else
``tokens.json`` in the data directory (``--data-dir``, else ``data/`` beside ``--config``, else ``./data``).
A running server picks up changes on its next request.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sotp.auth import SCOPES, TokenStore, auth_config, describe, parse_tenant
from sotp.cli.options import config_options, shared_options
from sotp.config import load_config
from sotp.errors import ConfigError


def _options(parser: argparse.ArgumentParser) -> None:
    config_options(parser)
    parser.add_argument("--tokens-file",
                        help="tokens file (overrides auth.tokens_file; default tokens.json in the data directory)")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    common = shared_options(parser, _options)
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    create = sub.add_parser("create", parents=[common], help="create a token and print it once")
    create.add_argument("--name", required=True, help="who uses it, e.g. web01 or grafana")
    create.add_argument(
        "--scope", action="append", choices=SCOPES, required=True,
        help="write (remote write, push, ingest), read (query API), configs (device backups) or admin (all); "
        "repeatable",
    )
    create.add_argument("--tenant", help="bind to a tenant label, e.g. team=a (forced on writes and reads)")
    lst = sub.add_parser("list", parents=[common], help="list tokens (never the tokens themselves)")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.add_argument("--all", action="store_true", help="include revoked tokens")
    revoke = sub.add_parser("revoke", parents=[common], help="revoke a token by id or name")
    revoke.add_argument("key", help="token id (from 'sotp token list') or name")


def _store(args: argparse.Namespace) -> TokenStore:
    if args.tokens_file:
        return TokenStore(Path(args.tokens_file).resolve())
    return TokenStore(auth_config(load_config(args.config, args.data_dir)).tokens_file)


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def run(args: argparse.Namespace) -> int:
    try:
        store = _store(args)
        if args.action == "create":
            tenant = parse_tenant(args.tenant) if args.tenant else None
            token, rec = store.create(args.name, args.scope, tenant)
            # The token alone on stdout (scripts capture it); the explanation on stderr.
            print(token)
            sys.stderr.write(
                f"created token {rec.id} ({rec.name}, scopes {','.join(rec.scopes)}"
                f"{', tenant ' + '='.join(rec.tenant) if rec.tenant else ''}) in {store.path}\n"
                "it is shown only now: store it (e.g. Authorization: Bearer <token>)\n"
            )
            return 0
        if args.action == "list":
            recs = [r for r in store.records() if args.all or r.revoked is None]
            recs.sort(key=lambda r: r.created)
            if args.json:
                print(json.dumps([describe(r) for r in recs], indent=1))
                return 0
            print(f"{'ID':<12}  {'NAME':<20}  {'SCOPES':<17}  {'TENANT':<16}  {'CREATED':<20}  REVOKED")
            for r in recs:
                shown = "=".join(r.tenant) if r.tenant else "-"
                print(f"{r.id:<12}  {r.name:<20}  {','.join(r.scopes):<17}  {shown:<16}  "
                      f"{_when(r.created):<20}  {_when(r.revoked)}")
            return 0
        rec = store.revoke(args.key)
        sys.stderr.write(f"revoked token {rec.id} ({rec.name}); servers refuse it from their next request\n")
        return 0
    except ConfigError as err:
        sys.stderr.write(f"sotp token: {err}\n")
        return 2
