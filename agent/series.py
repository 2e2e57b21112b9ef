"""Turn metric families into remote-write batches: add target labels, sort, split, encode."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from sotp.codec.exposition import MetricFamily
from sotp.codec.remote_write_encoder import encode_label_fields, encode_timeseries_raw, snappy_block

LabelPairs = tuple[tuple[str, str], ...]


def to_series(
    families: Iterable[MetricFamily], target: Mapping[str, str]
) -> Iterator[LabelPairs]:
    """Yield each sample's sorted label pairs, ``__name__`` included, with ``target`` labels
    (instance, job and the configured extra labels) overriding same-named sample labels.
    Empty values are left out: in Prometheus an empty label is an absent one."""
    for fam in families:
        for name, labels, _ in fam.samples:
            merged = {**labels, **target, "__name__": name}
            yield tuple(sorted((k, v) for k, v in merged.items() if v != ""))


class BatchEncoder:
    """Encodes collections into remote-write bodies, caching each series' encoded labels.

    A host's label sets are the same every interval, so the cache turns most of the protobuf work into a
    dictionary lookup. It is bounded: past ``max_cached`` series it starts over (interfaces and mounts
    that come and go must not grow it forever).
    """

    def __init__(self, target: Mapping[str, str], max_samples: int, max_cached: int = 20_000) -> None:
        self.target = dict(target)
        self.max_samples = max_samples
        self.max_cached = max_cached
        self._labels: dict[LabelPairs, bytes] = {}

    def encode(self, families: Sequence[MetricFamily], t_ms: int) -> list[tuple[bytes, int]]:
        """Bodies of at most ``max_samples`` samples each, with their sample counts."""
        if len(self._labels) > self.max_cached:
            self._labels.clear()
        cache = self._labels
        values = (v for fam in families for _, _, v in fam.samples)
        out: list[tuple[bytes, int]] = []
        chunk: list[bytes] = []
        for pairs, value in zip(to_series(families, self.target), values, strict=True):
            fields = cache.get(pairs)
            if fields is None:
                fields = cache[pairs] = encode_label_fields(pairs)
            chunk.append(encode_timeseries_raw(fields, ((t_ms, value),)))
            if len(chunk) >= self.max_samples:
                out.append((snappy_block(b"".join(chunk)), len(chunk)))
                chunk = []
        if chunk:
            out.append((snappy_block(b"".join(chunk)), len(chunk)))
        return out
