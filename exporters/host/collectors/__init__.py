"""One module per node_exporter collector, each with ``collect(src: Sources, opts: Options) -> list[MetricFamily]``.

A collector raises :class:`NoData` when what it reads does not exist on this host (no conntrack module, no
PSI, no hwmon chips): node_exporter reports those with ``node_scrape_collector_success 0`` and logs them at
debug level only. Any ``OSError``/``ValueError``/``IndexError`` is a real failure, logged as a warning.
"""

from __future__ import annotations

import os

from sotp.codec.exposition import MetricFamily


class NoData(Exception):
    """This host has nothing for the collector (node_exporter's ``ErrNoData``)."""


class PartialFailure(Exception):
    """Part of what the collector reads failed: ``families`` holds what it did read, published with
    ``node_scrape_collector_success 0`` (node_exporter sends metrics as it goes, then returns the error)."""

    def __init__(self, families: list[MetricFamily], error: Exception) -> None:
        super().__init__(str(error))
        self.families = families


def sys_class(sys_root: str | os.PathLike[str], cls: str, missing: str) -> tuple[str, list[str]]:
    """``/sys/class/<cls>`` under ``sys_root`` and its entries in name order; :class:`NoData` with ``missing``
    when the class does not exist on this host."""
    base = os.path.join(sys_root, "class", cls)
    try:
        return base, sorted(os.listdir(base))
    except FileNotFoundError as err:
        raise NoData(missing) from err


class Families:
    """Families built as samples arrive, in first-seen order: ``add`` creates ``prefix + name`` on its first
    sample (collectors whose family set depends on what the files hold)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.fams: dict[str, MetricFamily] = {}

    def add(self, name: str, typ: str, help_: str, labels: dict[str, str], value: float) -> None:
        fam = self.fams.get(name)
        if fam is None:
            fam = self.fams[name] = MetricFamily(self.prefix + name, typ, help_)
        fam.add(labels, value)
