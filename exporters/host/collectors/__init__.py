"""One module per node_exporter collector, each with ``collect(src: Sources, opts: Options) -> list[MetricFamily]``.

A collector raises :class:`NoData` when what it reads does not exist on this host (no conntrack module, no
PSI, no hwmon chips): node_exporter reports those with ``node_scrape_collector_success 0`` and logs them at
debug level only. Any ``OSError``/``ValueError``/``IndexError`` is a real failure, logged as a warning.
"""


class NoData(Exception):
    """This host has nothing for the collector (node_exporter's ``ErrNoData``)."""
