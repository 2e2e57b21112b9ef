"""node_exporter's command-line flags, shared by ``sotp exporter host`` and ``sotp agent``.

* ``--collector.<name>`` / ``--no-collector.<name>`` for every node_exporter 1.5 collector, and
  ``--collector.disable-defaults``; ``--collectors a,b`` is SOTP's shorthand for "exactly these".
* One ``--collector.<name>.<option>`` flag per :class:`~exporters.host.options.Options` field, spelled as
  node_exporter spells it (``--collector.filesystem.mount-points-exclude``, ``--collector.textfile.directory``).
* ``--path.procfs``, ``--path.sysfs``, ``--path.rootfs``, ``--path.udev.data`` (also ``--proc``, ``--sys``,
  ``--rootfs``, ``--udev-data``).

Turning on a collector SOTP does not implement is refused with the reason (:data:`NOT_IMPLEMENTED`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from exporters.host.options import Options, flag_name
from exporters.host.registry import (
    BACKENDS,
    COLLECTORS,
    DEFAULT_ENABLED,
    NOT_IMPLEMENTED,
    OFF_BY_DEFAULT_UPSTREAM,
    available,
)
from exporters.host.sources import Sources
from sotp.config import parse_duration
from sotp.errors import ConfigError

ALL_UPSTREAM = sorted({*COLLECTORS, *NOT_IMPLEMENTED, *OFF_BY_DEFAULT_UPSTREAM})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    paths = parser.add_argument_group("what to read (node_exporter's --path.* flags)")
    paths.add_argument("--path.procfs", "--proc", dest="proc", default="/proc", help="procfs mount point")
    paths.add_argument("--path.sysfs", "--sys", dest="sys", default="/sys", help="sysfs mount point")
    paths.add_argument("--path.rootfs", "--rootfs", dest="rootfs", default="/",
                       help="where the host's / is mounted (prefix for mount points and /etc files)")
    paths.add_argument("--path.udev.data", "--udev-data", dest="udev_data", default="/run/udev/data",
                       help="udev database (node_disk_info labels)")
    paths.add_argument("--backend", choices=("auto", *BACKENDS), default="auto",
                       help="procfs: node_exporter's Linux collectors reading /proc and /sys; psutil: a portable "
                            "subset for macOS, Windows and the BSDs (needs psutil); auto: procfs on Linux, "
                            "psutil elsewhere")

    group = parser.add_argument_group("collectors (node_exporter's --collector.<name> flags)")
    group.add_argument("--collectors", metavar="NAMES",
                       help="run exactly these comma-separated collectors (default: every default one: "
                            f"{', '.join(DEFAULT_ENABLED)})")
    group.add_argument("--collector.disable-defaults", dest="disable_defaults", action="store_true",
                       help="turn every collector off except those named with --collector.<name>")
    for name in ALL_UPSTREAM:
        state = "on" if name in DEFAULT_ENABLED else "not implemented" if name not in COLLECTORS else "off"
        group.add_argument(f"--collector.{name}", dest=f"collector_{name}", action=argparse.BooleanOptionalAction,
                           default=None, help=f"the {name} collector ({state} by default)")

    opts = parser.add_argument_group("collector options (node_exporter's names and defaults)")
    for f in fields(Options):
        flag = f"--collector.{flag_name(f.name)}"
        if f.type in ("bool", bool):
            opts.add_argument(flag, dest=f"opt_{f.name}", action=argparse.BooleanOptionalAction, default=f.default)
        elif f.type in ("float", float):
            opts.add_argument(flag, dest=f"opt_{f.name}", default=f"{f.default:g}s", metavar="DURATION",
                              help=f"default {f.default:g}s")
        else:
            opts.add_argument(flag, dest=f"opt_{f.name}", default=f.default, metavar="REGEX" if "dir" not in
                              f.name else "DIR", help=f"default {f.default!r}" if f.default else None)


def options_from_args(args: argparse.Namespace) -> Options:
    values: dict[str, object] = {}
    for f in fields(Options):
        value = getattr(args, f"opt_{f.name}")
        if f.type in ("float", float) and isinstance(value, str):
            value = parse_duration(value, f"--collector.{flag_name(f.name)}")
        values[f.name] = value
    try:
        return Options(**values)  # type: ignore[arg-type]
    except ValueError as err:
        raise ConfigError(str(err)) from err


def backend_from_args(args: argparse.Namespace) -> str:
    backend: str = args.backend
    if backend == "auto":
        backend = "procfs" if sys.platform.startswith("linux") else "psutil"
    if backend == "psutil":
        try:
            import psutil  # noqa: F401
        except ImportError as err:
            raise ConfigError("--backend psutil needs the psutil package: pip install psutil (on macOS, Windows "
                              "and the BSDs pip install 'sotp[agent]' brings it)") from err
    return backend


def collectors_from_args(args: argparse.Namespace) -> list[str]:
    """The collectors to run, as node_exporter decides: defaults, minus ``--no-collector.<name>``, plus
    ``--collector.<name>``; ``--collector.disable-defaults`` keeps only the named ones. With the psutil
    backend the defaults are the collectors it has, and asking for another one is an error."""
    backend = backend_from_args(args)
    defaults = set(DEFAULT_ENABLED) & set(available(backend))
    if args.collectors is not None:
        names = [n.strip() for n in args.collectors.split(",") if n.strip()]
    else:
        names = [n for n in ALL_UPSTREAM
                 if getattr(args, f"collector_{n}") or
                 (getattr(args, f"collector_{n}") is None and not args.disable_defaults and n in defaults)]
    for n in names:
        if n in COLLECTORS and n not in available(backend):
            raise ConfigError(f"collector {n} reads /proc or /sys and does not exist with --backend {backend}; "
                              f"it has {', '.join(available(backend))}")
        if n in NOT_IMPLEMENTED:
            raise ConfigError(f"--collector.{n}: SOTP does not implement node_exporter's {n} collector "
                              f"({NOT_IMPLEMENTED[n]})")
        if n not in COLLECTORS:
            flag = "--collectors" if args.collectors is not None else f"--collector.{n}"
            raise ConfigError(f"{flag}: unknown or unimplemented collector {n!r}; choose from "
                              f"{', '.join(sorted(COLLECTORS))}")
    return sorted(set(names))


def sources_from_args(args: argparse.Namespace) -> Sources:
    return Sources(proc=Path(args.proc), sys=Path(args.sys), rootfs=args.rootfs.rstrip("/"),
                   udev=Path(args.udev_data), backend=backend_from_args(args))
