"""``sotp snmp generate|walk|check``: from MIB files to a checked snmp.yml, and a walk that speaks MIB names.

* ``generate [generator.yml] -m DIR... -o snmp.yml``: snmp_exporter's generator (same input format,
  same output): exit 1 when a MIB does not parse (unless ``--no-fail-on-parse-errors``) or a module
  cannot be generated; the message names the file, line, MIB and object.
* ``walk TARGET [OID|NAME]``: a debugging walk printing ``MODULE::name.index = TYPE: value`` from the
  loaded MIBs, like ``snmpwalk -m ALL``.
* ``check snmp.yml``: loads a module file as the exporter does (exit 2 with the key path when it is
  invalid) and warns about metrics and lookups that no ``walk``/``get`` of their module fetches.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from exporters.snmp.config import Auth, Module, SnmpConfig, load_config, parse_config
from exporters.snmp.mib.names import MibNames, default_mib_dirs
from exporters.snmp.pdu import (
    COUNTER32,
    COUNTER64,
    GAUGE32,
    INTEGER,
    IP_ADDRESS,
    OBJECT_IDENTIFIER,
    OCTET_STRING,
    OPAQUE_DOUBLE,
    OPAQUE_FLOAT,
    TIMETICKS,
    Pdu,
    ScrapeError,
)
from sotp.config import read_yaml_file
from sotp.errors import ConfigError

log = logging.getLogger("sotp.snmp")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    gen = sub.add_parser("generate", help="generate snmp.yml from generator.yml and MIB files")
    gen.add_argument("generator", nargs="?", default="generator.yml", help="generator.yml (snmp_exporter's format)")
    _mib_dirs(gen)
    gen.add_argument("-o", "--output-path", default="snmp.yml", help="where to write snmp.yml (- for stdout)")
    gen.add_argument("--module", action="append", default=[], metavar="NAME",
                     help="generate only this module (repeatable)")
    gen.add_argument("--no-fail-on-parse-errors", dest="fail_on_parse_errors", action="store_false",
                     help="write the file even when some MIB files do not parse")
    walk = sub.add_parser("walk", help="walk a device, printing MIB names (like snmpwalk -m ALL)")
    walk.add_argument("target", help="host, host:port or [ipv6]:port")
    walk.add_argument("oid", nargs="?", default="1.3.6.1.2.1", help="OID or MIB name to walk (default: mib-2)")
    _mib_dirs(walk)
    walk.add_argument("--config", default=None, metavar="snmp.yml", help="module file holding --auth")
    walk.add_argument("--auth", default="public_v2", help="auth name (public_v1, public_v2 or one of --config)")
    walk.add_argument("--community", default=None, help="v1/v2c community (overrides the auth's)")
    walk.add_argument("--timeout", type=float, default=2.0, help="seconds per request")
    walk.add_argument("--retries", type=int, default=1)
    walk.add_argument("--max-repetitions", type=int, default=25)
    walk.add_argument("--numeric", action="store_true", help="print numeric OIDs")
    walk.add_argument("--backend", choices=["pysnmp", "ezsnmp", "native"], default="native")
    check = sub.add_parser("check", help="validate a module file (snmp.yml)")
    check.add_argument("config", help="snmp.yml to check")


def _mib_dirs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--mibs-dir", dest="mibs_dir", action="append", default=[], metavar="DIR",
                        help="MIB directory (repeatable); default $MIBDIRS or /usr/share/snmp/mibs")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "generate":
            return generate(args)
        if args.action == "walk":
            return walk(args)
        return check(args)
    except ConfigError as err:
        sys.stderr.write(f"sotp snmp {args.action}: {err}\n")
        return 2
    except FileNotFoundError as err:
        sys.stderr.write(f"sotp snmp {args.action}: {err}\n")
        return 2


# -- generate -------------------------------------------------------------------------------------------------
def generate(args: argparse.Namespace) -> int:
    from exporters.snmp.generator.config import load_generator_config
    from exporters.snmp.generator.generate import GeneratorError
    from exporters.snmp.generator.generate import generate as generate_doc
    from exporters.snmp.generator.output import dump_snmp_yml
    from exporters.snmp.mib.loader import load_mibs
    from exporters.snmp.mib.tree import name_index, prepare_tree

    config = load_generator_config(args.generator)
    unknown = [m for m in args.module if m not in config.modules]
    if unknown:
        raise ConfigError(f"--module {unknown[0]!r}: not a module of {args.generator} "
                          f"(modules: {', '.join(sorted(config.modules))})")
    dirs = args.mibs_dir or default_mib_dirs()
    if not dirs:
        raise ConfigError("no MIB directory: give -m DIR (or set MIBDIRS)")
    mibs = load_mibs(dirs)
    log.info("loaded %d MIB modules from %s", len(mibs.modules), ", ".join(dirs))
    for problem in mibs.problems:
        sys.stderr.write(f"MIB problem: {problem}\n")
    if mibs.problems and args.fail_on_parse_errors:
        sys.stderr.write(f"sotp snmp generate: {len(mibs.problems)} MIB problem(s); fix them or pass "
                         "--no-fail-on-parse-errors\n")
        return 1
    prepare_tree(mibs.root)
    names = name_index(mibs.root, with_modules=True)
    try:
        document = generate_doc(config, mibs.root, names, only=args.module or None)
    except GeneratorError as err:
        sys.stderr.write(f"sotp snmp generate: {err}\n")
        return 1
    text = dump_snmp_yml(document)
    if args.output_path == "-":
        sys.stdout.write(text)
    else:
        Path(args.output_path).write_text(text)
        count = sum(len(m["metrics"]) for m in document["modules"].values())
        sys.stderr.write(f"wrote {args.output_path}: {len(document['modules'])} modules, {count} metrics\n")
    return 0


# -- walk -----------------------------------------------------------------------------------------------------
def walk(args: argparse.Namespace) -> int:
    from exporters.snmp.scraper import ScrapeResult, parse_target, scrape
    from exporters.snmp.server import make_backend

    dirs = args.mibs_dir or default_mib_dirs()
    names = MibNames.load(dirs) if dirs else None
    try:
        oid = names.resolve(args.oid) if names else args.oid.lstrip(".")
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from err
    if not oid.replace(".", "").isdigit():
        raise ConfigError(f"{args.oid!r} is not an OID and no MIB is loaded to resolve it (give -m DIR)")
    config = load_config(args.config)
    auth = config.auths.get(args.auth)
    if auth is None:
        raise ConfigError(f"--auth {args.auth!r}: unknown (known: {', '.join(sorted(config.auths))})")
    if args.community is not None:
        auth = Auth(**{**auth.__dict__, "community": args.community})
    module = Module(walk=[oid], retries=args.retries, timeout=args.timeout, max_repetitions=args.max_repetitions)
    module.validate("walk")

    async def run_walk() -> list[Pdu]:
        backend = make_backend(args.backend)
        host, port = parse_target(args.target)
        session = await backend.open(host, port, auth, module.timeout_s, module.max_repetitions)
        try:
            return (await scrape(session, module, args.target, ScrapeResult())).pdus
        finally:
            await session.close()
            backend.close()

    try:
        pdus = asyncio.run(run_walk())
    except ScrapeError as err:
        sys.stderr.write(f"sotp snmp walk: {err}\n")
        return 1
    for pdu in pdus:
        sys.stdout.write(format_varbind(pdu, None if args.numeric else names) + "\n")
    if not pdus:
        sys.stderr.write(f"sotp snmp walk: no objects under {oid} on {args.target}\n")
    return 0


def format_varbind(pdu: Pdu, names: MibNames | None) -> str:
    """``IF-MIB::ifOperStatus.1 = INTEGER: up(1)``, as net-snmp's tools print varbinds."""
    name = names.name(pdu.oid) if names else pdu.oid
    return f"{name} = {format_value(pdu, names)}"


def format_value(pdu: Pdu, names: MibNames | None) -> str:
    raw = pdu.value
    if isinstance(raw, bytes):
        if pdu.type != OCTET_STRING:
            return f"{pdu.type}: {raw.hex()}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
            return f'STRING: "{text}"'
        return "Hex-STRING: " + " ".join(f"{b:02X}" for b in raw)
    v: int | float | str | None = raw
    if pdu.type == INTEGER and isinstance(v, int):
        node = names.node_for(pdu.oid)[0] if names else None
        label = node.enum_values.get(v) if node is not None else None
        return f"INTEGER: {label}({v})" if label else f"INTEGER: {v}"
    if pdu.type == TIMETICKS and isinstance(v, int):
        days, rest = divmod(v, 8640000)
        hours, rest = divmod(rest, 360000)
        minutes, rest = divmod(rest, 6000)
        seconds, hundredths = divmod(rest, 100)
        when = f"{days} day{'s' if days != 1 else ''}, " if days else ""
        return f"Timeticks: ({v}) {when}{hours}:{minutes:02d}:{seconds:02d}.{hundredths:02d}"
    if pdu.type in (COUNTER32, GAUGE32, COUNTER64):
        return f"{pdu.type}: {v}"
    if pdu.type == OBJECT_IDENTIFIER and isinstance(v, str):
        return f"OID: {names.name(v) if names else v}"
    if pdu.type == IP_ADDRESS:
        return f"IpAddress: {v}"
    if pdu.type in (OPAQUE_FLOAT, OPAQUE_DOUBLE):
        return f"Opaque: {'Float' if pdu.type == OPAQUE_FLOAT else 'Double'}: {v}"
    return f"{pdu.type}: {v}"


# -- check ----------------------------------------------------------------------------------------------------
def check(args: argparse.Namespace) -> int:
    data = read_yaml_file(args.config, "SNMP module file")
    config = parse_config(data, str(args.config))
    warnings = coverage_warnings(config)
    for warning in warnings:
        sys.stderr.write(f"warning: {warning}\n")
    metrics = sum(len(m.metrics) for m in config.modules.values())
    sys.stdout.write(f"{args.config}: ok: {len(config.modules)} modules, {metrics} metrics, "
                     f"{len(config.auths)} auths, {len(warnings)} warnings\n")
    return 0


def _covered(oid: str, roots: Sequence[str]) -> bool:
    return any(oid == r or oid.startswith(r + ".") or r.startswith(oid + ".") for r in roots)


def coverage_warnings(config: SnmpConfig) -> list[str]:
    """Metrics and lookups whose OIDs no walk or get of the module fetches (they would never appear)."""
    out = []
    for name, module in config.modules.items():
        fetched = [*module.walk, *module.get]
        for metric in module.metrics:
            if not _covered(metric.oid, fetched):
                out.append(f"modules.{name}: metric {metric.name} ({metric.oid}) is not under any walk or get")
            for lookup in metric.lookups:
                if lookup.oid and not _covered(lookup.oid, fetched):
                    out.append(f"modules.{name}: lookup {lookup.labelname} of {metric.name} ({lookup.oid}) "
                               "is not under any walk or get: its label will be empty")
    return out
