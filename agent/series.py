"""Turn metric families into remote-write batches: add target labels, sort, split, encode."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from sotp.codec.exposition import MetricFamily
from sotp.codec.remote_write_encoder import encode_timeseries, snappy_block

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


def encode_batches(
    families: Sequence[MetricFamily], target: Mapping[str, str], t_ms: int, max_samples: int
) -> list[tuple[bytes, int]]:
    """Encoded remote-write bodies of at most ``max_samples`` samples each, with their sample counts."""
    values = (v for fam in families for _, _, v in fam.samples)
    out: list[tuple[bytes, int]] = []
    chunk: list[bytes] = []
    for pairs, value in zip(to_series(families, target), values, strict=True):
        chunk.append(encode_timeseries(pairs, ((t_ms, value),)))
        if len(chunk) >= max_samples:
            out.append((snappy_block(b"".join(chunk)), len(chunk)))
            chunk = []
    if chunk:
        out.append((snappy_block(b"".join(chunk)), len(chunk)))
    return out
