"""``selinux``: whether SELinux is enabled, and its configured and current modes when it is.

As go-selinux decides it: enabled when selinuxfs is mounted (``/sys/fs/selinux/enforce`` exists) and this
process runs under a context other than ``kernel``. The configured mode comes from ``SELINUX=`` in
/etc/selinux/config (enforcing 1, permissive 0, disabled -1), the current one from selinuxfs.
"""

from __future__ import annotations

from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

_MODES = {"enforcing": 1.0, "permissive": 0.0}


def _enabled(src: Sources) -> bool:
    if not (src.sys / "fs" / "selinux" / "enforce").exists():
        return False
    try:
        context = (src.proc / "self" / "attr" / "current").read_text().strip("\x00\n ")
    except OSError:
        return False
    return context not in ("", "kernel")


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    enabled = MetricFamily("node_selinux_enabled", "gauge", "SELinux is enabled, 1 is true, 0 is false")
    if not _enabled(src):
        enabled.add({}, 0.0)
        return [enabled]
    enabled.add({}, 1.0)
    config = -1.0
    try:
        for line in src.rooted("/etc/selinux/config").read_text().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key.strip() == "SELINUX":
                config = _MODES.get(value.strip().strip("\"'"), -1.0)
    except OSError:
        pass
    current = 1.0 if src.read(src.sys, "fs", "selinux", "enforce").strip() == "1" else 0.0
    config_fam = MetricFamily("node_selinux_config_mode", "gauge", "Configured SELinux enforcement mode")
    config_fam.add({}, config)
    current_fam = MetricFamily("node_selinux_current_mode", "gauge", "Current SELinux enforcement mode")
    current_fam.add({}, current)
    return [config_fam, current_fam, enabled]
