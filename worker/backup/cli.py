"""``sotp backup run [--device D]`` and ``sotp backup diff D [--from N] [--to M]``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from sotp.cli.options import check_option, config_options, shared_options
from sotp.config import load_config
from sotp.errors import SotpError
from sotp.storage import open_storage, require_existing_store
from sotp.storage.configs import config_store_for
from worker.backup.config import backup_config
from worker.backup.masking import readable
from worker.backup.scheduler import BackupRunner, unified_diff


def _options(parser: argparse.ArgumentParser) -> None:
    config_options(parser)
    parser.add_argument("--storage", help="storage URL (default: server.storage from the config, else the data dir's)")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    common = shared_options(parser, _options)
    sub = parser.add_subparsers(dest="action", required=True, metavar="<action>")
    run_p = sub.add_parser("run", parents=[common], help="back up every device now (or one with --device)")
    run_p.add_argument("--device", help="only this device (its name in backup.devices or devices:)")
    check_option(run_p)
    diff_p = sub.add_parser("diff", parents=[common], help="show what changed between two stored versions")
    diff_p.add_argument("device")
    diff_p.add_argument("--from", dest="from_", type=int, help="older version (default: the one before --to)")
    diff_p.add_argument("--to", type=int, help="newer version (default: the newest)")
    sub.add_parser("list", parents=[common], help="devices with their newest stored version")


async def _main(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.data_dir)
    url = args.storage or config.server.storage
    if args.action == "run":
        cfg = backup_config(config)
        if not cfg.devices:
            where = f"in {args.config}" if args.config else "(no --config given)"
            print(f"sotp backup run: no devices configured {where}: list them under backup.devices or give "
                  "devices: a backup: entry", file=sys.stderr)
            return 2
    else:
        require_existing_store(url)
    storage = open_storage(url)
    await storage.open()
    store = config_store_for(storage)
    await store.open()
    try:
        if args.action == "run":
            results = await BackupRunner(cfg, storage, store).run_once(args.device)
            for r in results:
                if r.ok:
                    change = f"new version {r.new_version.version}" if r.new_version else "unchanged"
                    print(f"{r.device}: ok in {r.duration_s:.1f}s, {change}")
                else:
                    print(f"{r.device}: FAILED ({r.reason}): {r.error}")
            return 0 if all(r.ok for r in results) else 1
        if args.action == "list":
            latest = await store.latest()
            if not latest:
                print(f"sotp backup list: no configuration stored yet in {url.split('@')[-1]} (run: sotp backup run)",
                      file=sys.stderr)
            for v, n in latest:
                print(f"{v.device}\tversion {v.version}\t{n} version(s)\t{v.size} bytes")
            return 0
        versions = [v.version for v in await store.versions(args.device)]
        if not versions:
            print(f"sotp backup diff: no configuration stored for {args.device!r}", file=sys.stderr)
            return 1
        to = args.to or versions[-1]
        frm = args.from_ or max(versions[0], to - 1)
        old, new = await store.get(args.device, frm), await store.get(args.device, to)
        if old is None or new is None:
            print(f"sotp backup diff: {args.device} has versions {versions[0]}..{versions[-1]}", file=sys.stderr)
            return 1
        info = (await store.infos()).get(args.device)
        old, new = ((v, readable(text, info.masked_as if info else None, info is not None)) for v, text in (old, new))
        sys.stdout.write(unified_diff(args.device, old, new) or f"{args.device}: v{frm} and v{to} are identical\n")
        return 0
    finally:
        await store.close()
        await storage.close()


def run(args: argparse.Namespace) -> int:
    if getattr(args, "check", False):
        from sotp.cli.check import check_file

        return check_file(args.config, args.data_dir)
    try:
        return asyncio.run(_main(args))
    except SotpError as err:
        print(f"sotp backup: {err}", file=sys.stderr)
        return 2
