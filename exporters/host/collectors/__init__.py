"""One module per node_exporter collector; each has ``collect(src: Sources) -> list[MetricFamily]``."""
