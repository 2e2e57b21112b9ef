"""Host metrics with node_exporter 1.5's names, labels, types and units, read from a proc/sys root.

``collect(sources)`` returns :class:`sotp.codec.exposition.MetricFamily` lists; ``exporters.host.cli``
serves them on ``/metrics`` and ``agent`` pushes them over remote write. Nothing here imports psutil,
numpy or protobuf: the agent shares these collectors and must stay within node_exporter's RSS.
"""

from exporters.host.registry import COLLECTORS, collect
from exporters.host.sources import Sources

__all__ = ["COLLECTORS", "Sources", "collect"]
