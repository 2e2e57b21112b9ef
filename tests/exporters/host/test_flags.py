"""node_exporter's command line, as ``sotp exporter host`` and ``sotp agent`` read it."""

from __future__ import annotations

import argparse

import pytest

from exporters.host import flags
from exporters.host.options import DISKSTATS_DEVICE_EXCLUDE, Options
from exporters.host.registry import COLLECTORS, DEFAULT_ENABLED
from sotp.errors import ConfigError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_every_implemented_default_collector() -> None:
    assert flags.collectors_from_args(parse()) == sorted(DEFAULT_ENABLED)
    assert len(DEFAULT_ENABLED) == 46  # all of Debian's node_exporter 1.5 defaults


@pytest.mark.parametrize(
    ("argv", "want_in", "want_out"),
    [(["--no-collector.netstat", "--no-collector.textfile"], {"cpu", "meminfo"}, {"netstat", "textfile"}),
     (["--collector.disable-defaults", "--collector.cpu", "--collector.meminfo"], {"cpu", "meminfo"}, {"netstat"}),
     (["--collectors", "loadavg,uname"], {"loadavg", "uname"}, {"cpu"})],
    ids=["no-collector", "disable-defaults", "collectors-shorthand"],
)
def test_choosing_collectors(argv: list[str], want_in: set[str], want_out: set[str]) -> None:
    chosen = set(flags.collectors_from_args(parse(*argv)))
    assert want_in <= chosen and not (want_out & chosen)
    if "--collector.disable-defaults" in argv or "--collectors" in argv:
        assert chosen == want_in


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--collector.wifi"], "wifi"),  # off by default in node_exporter, not in SOTP
     (["--collectors", "cpu,gpu"], "gpu"),
     (["--collector.netdev.device-include=eth0"], "mutually exclusive"),  # Debian's default exclude is set
     (["--collector.vmstat.fields=("], "--collector.vmstat.fields"),
     (["--collector.filesystem.mount-timeout=soon"], "--collector.filesystem.mount-timeout"),
     (["--collector.ipvs.backend-labels=proto,colour"], "colour")],
    ids=["wifi", "unknown", "include-and-exclude", "bad-regex", "bad-duration", "ipvs-label"],
)
def test_refused_with_the_flag_and_reason(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        args = parse(*argv)
        flags.collectors_from_args(args)
        flags.options_from_args(args)


def test_options_spelled_as_node_exporter_spells_them() -> None:
    opts = flags.options_from_args(parse(
        "--collector.textfile.directory=/var/lib/textfile", "--collector.netdev.device-exclude=",
        "--collector.netdev.device-include=^eth", "--no-collector.netdev.netlink", "--collector.cpu.info",
        "--collector.filesystem.mount-timeout=2s", "--collector.bcache.priorityStats",
        "--collector.netclass.ignore-invalid-speed"))
    assert opts == Options(textfile_directory="/var/lib/textfile", netdev_device_exclude="",
                           netdev_device_include="^eth", netdev_netlink=False, cpu_info=True,
                           filesystem_mount_timeout=2.0, bcache_priority_stats=True,
                           netclass_ignore_invalid_speed=True)
    assert Options().diskstats_device_exclude == DISKSTATS_DEVICE_EXCLUDE


def test_path_flags_and_their_short_forms() -> None:
    src = flags.sources_from_args(parse("--path.procfs=/host/proc", "--sys", "/host/sys", "--path.rootfs=/host/"))
    assert (str(src.proc), str(src.sys), src.rootfs, src.backend) == ("/host/proc", "/host/sys", "/host", "procfs")


def test_every_collector_has_its_flag_pair() -> None:
    for name in COLLECTORS:
        assert getattr(parse(f"--no-collector.{name}"), f"collector_{name}") is False


@pytest.mark.parametrize(("platform", "backend"), [("linux", "procfs"), ("darwin", "psutil"), ("win32", "psutil"),
                                                   ("freebsd14", "psutil")])
def test_auto_backend_follows_the_platform(monkeypatch: pytest.MonkeyPatch, platform: str, backend: str) -> None:
    pytest.importorskip("psutil", reason="psutil is a dev dependency")
    monkeypatch.setattr(flags.sys, "platform", platform)  # the OSes themselves cannot run here
    assert flags.backend_from_args(parse()) == backend
    chosen = flags.collectors_from_args(parse())
    assert ("netstat" in chosen) == (backend == "procfs")  # psutil's set has no /proc-only collector
