"""``uname``: node_uname_info from the uname system call (injectable for fixture trees)."""

from __future__ import annotations

from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    u = src.uname()
    fam = MetricFamily(
        "node_uname_info", "gauge", "Labeled system information as provided by the uname system call."
    )
    fam.add(
        {
            "domainname": u.domainname,
            "machine": u.machine,
            "nodename": u.nodename,
            "release": u.release,
            "sysname": u.sysname,
            "version": u.version,
        },
        1.0,
    )
    return [fam]
