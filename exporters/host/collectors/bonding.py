"""``bonding``: configured and active (MII up) slaves of each bonding master in /sys/class/net."""

from __future__ import annotations

import os

from exporters.host.collectors import NoData
from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    root = os.path.join(src.sys, "class", "net")
    try:
        with open(os.path.join(root, "bonding_masters")) as fh:
            masters = fh.read().split()
    except FileNotFoundError as err:
        raise NoData("no bonding driver (no /sys/class/net/bonding_masters)") from err
    slaves_fam = MetricFamily("node_bonding_slaves", "gauge", "Number of configured slaves per bonding interface.")
    active_fam = MetricFamily("node_bonding_active", "gauge", "Number of active slaves per bonding interface.")
    counts = {}
    for master in masters:
        with open(os.path.join(root, master, "bonding", "slaves")) as fh:
            slaves = fh.read().split()
        active = 0
        for slave in slaves:
            path = os.path.join(root, master, f"lower_{slave}", "bonding_slave", "mii_status")
            if not os.path.exists(path):
                path = os.path.join(root, master, f"slave_{slave}", "bonding_slave", "mii_status")
            with open(path) as fh:
                active += fh.read().strip() == "up"
        counts[master] = (len(slaves), active)
    for master, (n, up) in counts.items():
        slaves_fam.add({"master": master}, float(n))
        active_fam.add({"master": master}, float(up))
    return [slaves_fam, active_fam]
