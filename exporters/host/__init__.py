"""Host metrics with node_exporter 1.5's names, labels, types, HELP and values, read from a proc/sys root.

``collect(sources, names, options)`` returns :class:`sotp.codec.exposition.MetricFamily` lists;
``exporters.host.cli`` serves them on ``/metrics`` and ``agent`` pushes them over remote write. One module
per node_exporter collector in ``collectors/``; ``flags`` reads node_exporter's command line into
``Sources`` (where to read) and ``Options`` (the per-collector flags). Only ``psutil_collectors`` (the
``--backend psutil`` set for systems without /proc) imports psutil; nothing imports numpy or protobuf: the
agent shares these collectors and must stay within node_exporter's RSS.
"""

from exporters.host.registry import COLLECTORS, collect
from exporters.host.sources import Sources

__all__ = ["COLLECTORS", "Sources", "collect"]
