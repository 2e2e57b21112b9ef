"""What the host collectors collect: node_exporter 1.5's per-collector flags, one field each.

Defaults are those of Debian's ``prometheus-node-exporter`` 1.5 (the parity oracle), except
``textfile_directory``, which is empty as upstream's is (Debian points it at
``/var/lib/prometheus/node-exporter``). Regular expressions are Go RE2 patterns that Python's ``re``
reads the same way; node_exporter matches them unanchored (``MatchString``), so do we (``re.search``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

DISKSTATS_DEVICE_EXCLUDE = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
MOUNT_POINTS_EXCLUDE = r"^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue"
    r"|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$"
)
NETSTAT_FIELDS = (
    r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)"
    r"|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)"
    r"|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)"
    r"|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$"
)
VMSTAT_FIELDS = r"^(oom_kill|pgpg|pswp|pg.*fault).*"
IPVS_LABELS = ("local_address", "local_port", "remote_address", "remote_port", "proto", "local_mark")
SYSTEMD_UNIT_EXCLUDE = r".+\.(automount|device|mount|scope|slice|target)"


@dataclass(frozen=True, slots=True)
class Options:
    """One field per node_exporter flag, named after it (``--collector.netdev.device-exclude`` is
    ``netdev_device_exclude``). An empty pattern means the flag is unset."""

    arp_device_include: str = ""
    arp_device_exclude: str = ""
    bcache_priority_stats: bool = False
    cpu_guest: bool = True
    cpu_info: bool = False
    cpu_info_flags_include: str = ""
    cpu_info_bugs_include: str = ""
    diskstats_device_exclude: str = DISKSTATS_DEVICE_EXCLUDE
    diskstats_device_include: str = ""
    filesystem_mount_points_exclude: str = MOUNT_POINTS_EXCLUDE
    filesystem_fs_types_exclude: str = FS_TYPES_EXCLUDE
    filesystem_mount_timeout: float = 5.0
    ipvs_backend_labels: str = "local_address,local_port,remote_address,remote_port,proto,local_mark"
    netclass_ignored_devices: str = "^$"
    netclass_ignore_invalid_speed: bool = False
    netdev_device_include: str = ""
    netdev_device_exclude: str = "^lo$"
    # node_exporter reads netdev over netlink by default, which adds receive_nohandler; SOTP reads the same
    # kernel counter from sysfs. --no-collector.netdev.netlink drops it, as /proc/net/dev has no such column.
    netdev_netlink: bool = True
    netstat_fields: str = NETSTAT_FIELDS
    powersupply_ignored_supplies: str = "^$"
    stat_softirq: bool = False
    systemd_unit_include: str = ".+"
    systemd_unit_exclude: str = SYSTEMD_UNIT_EXCLUDE
    systemd_enable_task_metrics: bool = False
    systemd_enable_restarts_metrics: bool = False
    systemd_enable_start_time_metrics: bool = False
    tapestats_ignored_devices: str = "^$"
    textfile_directory: str = ""
    vmstat_fields: str = VMSTAT_FIELDS

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and f.name not in ("textfile_directory", "ipvs_backend_labels"):
                try:
                    re.compile(value)
                except re.error as err:
                    flag = f"--collector.{flag_name(f.name)}"
                    raise ValueError(f"{flag}: invalid regular expression {value!r}: {err}") from None
        for prefix in ("arp", "diskstats", "netdev"):
            if getattr(self, f"{prefix}_device_include") and getattr(self, f"{prefix}_device_exclude"):
                raise ValueError(f"--collector.{prefix}.device-include and --collector.{prefix}.device-exclude are "
                                 "mutually exclusive: give one of them")
        unknown = sorted({x for x in self.ipvs_backend_labels.split(",") if x} - set(IPVS_LABELS))
        if unknown:
            raise ValueError(f"--collector.ipvs.backend-labels: unknown IPVS backend labels {', '.join(unknown)}; "
                             f"choose from {','.join(IPVS_LABELS)}")
        if self.filesystem_mount_timeout <= 0:
            raise ValueError("--collector.filesystem.mount-timeout must be positive")


def flag_name(field_name: str) -> str:
    """``netdev_device_exclude`` -> ``netdev.device-exclude`` (the part after ``--collector.``)."""
    collector, _, rest = field_name.partition("_")
    if collector == "cpu" and rest.startswith("info_"):
        return "cpu.info." + rest[len("info_"):].replace("_", "-")
    if collector == "bcache" and rest == "priority_stats":
        return "bcache.priorityStats"
    return f"{collector}.{rest.replace('_', '-')}"


class DeviceFilter:
    """node_exporter's device filter: ignored when the exclude pattern matches or the include pattern
    does not (the two are mutually exclusive; :class:`Options` checks that)."""

    __slots__ = ("_exclude", "_include")

    def __init__(self, exclude: str, include: str = "") -> None:
        self._exclude = re.compile(exclude) if exclude else None
        self._include = re.compile(include) if include else None

    def ignored(self, name: str) -> bool:
        return bool((self._exclude is not None and self._exclude.search(name))
                    or (self._include is not None and not self._include.search(name)))
