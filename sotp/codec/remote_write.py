"""Prometheus remote write 1.0: the protobuf schema (built at runtime, private pool) and snappy block codec.

The schema is SOTP's own minimal description of ``prometheus.WriteRequest`` (labels, samples,
exemplars, histograms skipped, metadata). It lives in a private ``DescriptorPool`` so it never collides
with another library that registers ``types.proto`` in protobuf's default pool.

Size limits are checked twice, as VictoriaMetrics does: on the compressed body, and on the length that
the snappy block header announces *before* decompressing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cramjam
import numpy as np
import numpy.typing as npt
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError as ProtoDecodeError

from sotp.codec.remote_write_encoder import serialize_write_request
from sotp.codec.remote_write_samples import decode_samples, split_series, trailing_sample_counts
from sotp.errors import DecodeError, LimitExceeded
from sotp.model import LABEL_NAME_RE, METRIC_NAME, METRIC_NAME_RE, Labels, intern_labels

CONTENT_TYPE_V1 = "application/x-protobuf"
PROTO_V1 = "prometheus.WriteRequest"
PROTO_V2 = "io.prometheus.write.v2.Request"

_F = descriptor_pb2.FieldDescriptorProto


def _build_schema() -> dict[str, Any]:
    fdp = descriptor_pb2.FileDescriptorProto(name="sotp_remote_write_v1.proto", package="prometheus")
    fdp.syntax = "proto3"

    def msg(name: str, fields: list[tuple[str, int, int, int, str | None]]) -> None:
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name

    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    msg("Label", [("name", 1, _F.TYPE_STRING, opt, None), ("value", 2, _F.TYPE_STRING, opt, None)])
    msg("Sample", [("value", 1, _F.TYPE_DOUBLE, opt, None), ("timestamp", 2, _F.TYPE_INT64, opt, None)])
    msg(
        "Exemplar",
        [
            ("labels", 1, _F.TYPE_MESSAGE, rep, ".prometheus.Label"),
            ("value", 2, _F.TYPE_DOUBLE, opt, None),
            ("timestamp", 3, _F.TYPE_INT64, opt, None),
        ],
    )
    msg(
        "TimeSeries",
        [
            ("labels", 1, _F.TYPE_MESSAGE, rep, ".prometheus.Label"),
            ("samples", 2, _F.TYPE_MESSAGE, rep, ".prometheus.Sample"),
            ("exemplars", 3, _F.TYPE_MESSAGE, rep, ".prometheus.Exemplar"),
            # Native histograms are kept as opaque bytes: only their presence matters (unsupported).
            ("histograms", 4, _F.TYPE_BYTES, rep, None),
        ],
    )
    msg(
        "MetricMetadata",
        [
            ("type", 1, _F.TYPE_INT32, opt, None),
            ("metric_family_name", 2, _F.TYPE_STRING, opt, None),
            ("help", 4, _F.TYPE_STRING, opt, None),
            ("unit", 5, _F.TYPE_STRING, opt, None),
        ],
    )
    msg(
        "WriteRequest",
        [
            ("timeseries", 1, _F.TYPE_MESSAGE, rep, ".prometheus.TimeSeries"),
            ("metadata", 3, _F.TYPE_MESSAGE, rep, ".prometheus.MetricMetadata"),
        ],
    )
    # The decoder's view of the same wire format: labels and samples as raw bytes (one object per field,
    # made in C), so that known label sets are found in a cache and samples are decoded with numpy
    # (sotp.codec.remote_write_samples) instead of one message object per sample.
    msg(
        "RawTimeSeries",
        [
            ("labels", 1, _F.TYPE_BYTES, rep, None),
            ("samples", 2, _F.TYPE_BYTES, rep, None),
            ("histograms", 4, _F.TYPE_BYTES, rep, None),
        ],
    )
    msg(
        "RawWriteRequest",
        [
            ("timeseries", 1, _F.TYPE_MESSAGE, rep, ".prometheus.RawTimeSeries"),
            ("metadata", 3, _F.TYPE_MESSAGE, rep, ".prometheus.MetricMetadata"),
        ],
    )
    msg(
        "SeriesBytesRequest",
        [
            ("timeseries", 1, _F.TYPE_BYTES, rep, None),
            ("metadata", 3, _F.TYPE_MESSAGE, rep, ".prometheus.MetricMetadata"),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"prometheus.{name}"))
        for name in (
            "WriteRequest", "TimeSeries", "Label", "Sample", "MetricMetadata", "RawWriteRequest", "RawTimeSeries",
            "SeriesBytesRequest",
        )
    }


_SCHEMA = _build_schema()
WriteRequest: Any = _SCHEMA["WriteRequest"]
_RawWriteRequest: Any = _SCHEMA["RawWriteRequest"]
_RawTimeSeries: Any = _SCHEMA["RawTimeSeries"]
_SeriesBytesRequest: Any = _SCHEMA["SeriesBytesRequest"]
_Label: Any = _SCHEMA["Label"]
_Sample: Any = _SCHEMA["Sample"]
MetricMetadata: Any = _SCHEMA["MetricMetadata"]

METADATA_TYPES = {
    0: "unknown", 1: "counter", 2: "gauge", 3: "histogram", 4: "gaugehistogram",
    5: "summary", 6: "info", 7: "stateset",
}


@dataclass(slots=True)
class DecodedSeries:
    """One series of a write request: validated labels and its samples in request order."""

    labels: Labels
    timestamps: list[int]
    values: list[float]


@dataclass(slots=True)
class Metadata:
    """Metric metadata sent by Prometheus in separate requests."""

    metric: str
    type: str
    help: str
    unit: str


@dataclass(slots=True)
class Columns:
    """A request's samples as arrays: series after series, ``counts[i]`` samples for ``labels[i]``.

    Only series with samples are listed. Writers that take arrays (``append_columns`` on a storage
    appender) skip building one Python list per series.
    """

    labels: list[Labels]
    counts: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    def to_series(self) -> list[DecodedSeries]:
        ts_all, vs_all = self.timestamps.tolist(), self.values.tolist()
        out: list[DecodedSeries] = []
        pos = 0
        for labels, n in zip(self.labels, self.counts.tolist(), strict=True):
            out.append(DecodedSeries(labels, ts_all[pos : pos + n], vs_all[pos : pos + n]))
            pos += n
        return out


class DecodedRequest:
    """A decoded, validated write request.

    ``series`` is built on first use when the decoder produced :attr:`columns` (the usual layout), so a
    writer that takes the arrays never pays for per-series lists.
    """

    __slots__ = ("_series", "columns", "metadata")

    def __init__(
        self, series: list[DecodedSeries] | None, metadata: list[Metadata], columns: Columns | None = None
    ) -> None:
        if series is None and columns is None:
            raise ValueError("DecodedRequest needs series or columns")
        self._series = series
        self.metadata = metadata
        self.columns = columns

    @property
    def series(self) -> list[DecodedSeries]:
        if self._series is None:
            assert self.columns is not None
            self._series = self.columns.to_series()
        return self._series

    @property
    def sample_count(self) -> int:
        if self._series is None and self.columns is not None:
            return int(self.columns.counts.sum())
        return sum(len(s.timestamps) for s in self.series)


def announced_length(body: bytes) -> int:
    """The decompressed size a snappy block announces in its header (0 for an empty body)."""
    return _varint_prefix(body) if body else 0


def _varint_prefix(data: bytes) -> int:
    result = 0
    shift = 0
    for i, b in enumerate(data[:10]):
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result
        shift += 7
        if i == 9:
            break
    raise DecodeError("cannot parse remote-write body (snappy): corrupt length header")


def snappy_decompress(body: bytes, max_decompressed: int) -> bytes:
    """Decompress a snappy *block* after checking the announced length against ``max_decompressed``."""
    if not body:
        raise DecodeError("cannot parse remote-write body (snappy): empty body")
    announced = _varint_prefix(body)
    if announced > max_decompressed:
        raise LimitExceeded(
            f"cannot decode write request: decompressed size {announced} bytes exceeds the limit "
            f"{max_decompressed} bytes (limits.max_decompressed_bytes)",
            status=413,
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except Exception as err:  # cramjam raises its own DecompressionError
        raise DecodeError(f"cannot parse remote-write body (snappy): {err}") from err


def snappy_compress(data: bytes) -> bytes:
    """Compress with the snappy block format, as remote write requires."""
    return bytes(cramjam.snappy.compress_raw(data))


def decode_write_request(
    body: bytes,
    *,
    max_decompressed: int = 64 << 20,
    max_series: int = 1_000_000,
    max_labels_per_series: int = 128,
    max_label_name_length: int = 1024,
    max_label_value_length: int = 4096,
) -> DecodedRequest:
    """Decode and validate a snappy-compressed remote-write 1.0 body.

    Raises :class:`DecodeError` (bad snappy/protobuf, invalid labels) or :class:`LimitExceeded`.
    Validation follows the spec: label names unique, sorted and valid; values non-empty; metric name
    present and valid.
    """
    raw = snappy_decompress(body, max_decompressed)
    whole = _SeriesBytesRequest()
    try:
        whole.ParseFromString(raw)
    except ProtoDecodeError as err:
        raise DecodeError(f"cannot parse remote-write body (protobuf): {err}") from err
    if len(whole.timeseries) > max_series:
        raise LimitExceeded(
            f"write request has {len(whole.timeseries)} series, limit {max_series} (limits.max_series_per_request)"
        )
    limits = (max_labels_per_series, max_label_name_length, max_label_value_length)
    cache = _LABELS_CACHE.get(limits)
    if cache is None or len(cache) > _LABELS_CACHE_MAX:
        cache = _LABELS_CACHE[limits] = {}
    columns = _decode_canonical(list(whole.timeseries), cache, limits)
    out: list[DecodedSeries] | None = None
    if columns is None:
        req = _RawWriteRequest()
        try:
            req.ParseFromString(raw)
        except ProtoDecodeError as err:
            raise DecodeError(f"cannot parse remote-write body (protobuf): {err}") from err
        out = _decode_general(req, cache, limits)
    meta = [
        Metadata(m.metric_family_name, METADATA_TYPES.get(m.type, "unknown"), m.help, m.unit)
        for m in whole.metadata
    ]
    return DecodedRequest(out, meta, columns)


def _decode_canonical(series: list[bytes], cache: dict[Any, Labels], limits: tuple[int, int, int]) -> Columns | None:
    """The fast path for the layout every known sender writes (labels, then canonical samples): the
    samples at the end of each series are counted, split off and decoded for the whole request with numpy.
    ``None``: another layout somewhere (histograms, samples among labels, ...); the general path decodes it.

    A series' label bytes are parsed once per distinct byte string (then cached); that parse also proves the
    split: a prefix that is not exactly whole label fields fails it, and the general path takes over.
    """
    counts = trailing_sample_counts(series)
    split = split_series(series, counts)
    if split is None:
        return None
    prefixes, ts_arr, vs_arr = split
    found = [cache.get(key) for key in prefixes]
    for i, labels in enumerate(found):
        if labels is None:
            key = prefixes[i]
            try:
                head = _RawTimeSeries.FromString(key)
            except ProtoDecodeError:
                return None
            if len(head.samples) or len(head.histograms):
                return None  # samples among the labels, or native histograms: not the canonical layout
            found[i] = cache[key] = _validate_pairs(_label_pairs(tuple(head.labels)), i, *limits)
    labels_list: list[Labels] = found  # type: ignore[assignment]  # every entry is set now
    if not bool(counts.all()):
        labels_list = [lb for lb, n in zip(labels_list, counts.tolist(), strict=True) if n]
        counts = counts[counts > 0]
    return Columns(labels_list, counts, ts_arr, vs_arr)


def _decode_general(req: Any, cache: dict[Any, Labels], limits: tuple[int, int, int]) -> list[DecodedSeries]:
    found: list[tuple[Labels, int]] = []
    chunks: list[bytes] = []
    for i, ts in enumerate(req.timeseries):
        key = tuple(ts.labels)
        labels = cache.get(key)
        if labels is None:
            labels = _validate_pairs(_label_pairs(key), i, *limits)
            cache[key] = labels
        if len(ts.histograms):
            raise DecodeError(
                f"series {labels}: native histograms are not supported; send classic histograms"
            )
        samples = ts.samples
        if samples:
            found.append((labels, len(samples)))
            chunks.extend(samples)
    ts_arr, vs_arr = decode_samples(chunks, _parse_sample)
    ts_all, vs_all = ts_arr.tolist(), vs_arr.tolist()
    out: list[DecodedSeries] = []
    pos = 0
    for labels, n in found:
        out.append(DecodedSeries(labels, ts_all[pos : pos + n], vs_all[pos : pos + n]))
        pos += n
    return out


#: Validated label sets by their raw ``Label`` fields, per limit setting: a sender repeats the same
#: series in every request, so each is parsed and checked once. Cleared when it grows past the bound.
#: Keys are the tuple of raw ``Label`` fields (general path) or the series' label bytes (canonical path).
_LABELS_CACHE: dict[tuple[int, int, int], dict[Any, Labels]] = {}
_LABELS_CACHE_MAX = 1_000_000


def _label_pairs(raw: tuple[bytes, ...]) -> tuple[tuple[str, str], ...]:
    try:
        labels = [_Label.FromString(b) for b in raw]
    except ProtoDecodeError as err:
        raise DecodeError(f"cannot parse remote-write body (protobuf label): {err}") from err
    return tuple((lb.name, lb.value) for lb in labels)


def _parse_sample(raw: bytes) -> tuple[int, float]:
    try:
        s = _Sample.FromString(raw)
    except ProtoDecodeError as err:
        raise DecodeError(f"cannot parse remote-write body (protobuf sample): {err}") from err
    return int(s.timestamp), float(s.value)


def _validate_pairs(
    pairs: tuple[tuple[str, str], ...],
    index: int,
    max_labels: int,
    max_name_len: int,
    max_value_len: int,
) -> Labels:
    if not pairs:
        raise DecodeError(f"series {index}: empty label set")
    if len(pairs) > max_labels:
        raise LimitExceeded(
            f"series {index} has {len(pairs)} labels, limit {max_labels} (limits.max_labels_per_series)"
        )
    prev = ""
    has_name = False
    for name, value in pairs:
        if name <= prev:
            what = "duplicate" if name == prev else "unsorted"
            raise DecodeError(f"series {index}: {what} label name {name!r} (label names must be sorted and unique)")
        prev = name
        if len(name) > max_name_len:
            raise LimitExceeded(
                f"series {index}: label name longer than {max_name_len} bytes (limits.max_label_name_length)"
            )
        if len(value) > max_value_len:
            raise LimitExceeded(
                f"series {index}: value of label {name!r} longer than {max_value_len} bytes "
                "(limits.max_label_value_length)"
            )
        if value == "":
            raise DecodeError(f"series {index}: label {name!r} has an empty value")
        if name == METRIC_NAME:
            has_name = True
            if not METRIC_NAME_RE.match(value):
                raise DecodeError(f"series {index}: invalid metric name {value!r}")
        elif not LABEL_NAME_RE.match(name):
            raise DecodeError(f"series {index}: invalid label name {name!r}")
    if not has_name:
        raise DecodeError(f"series {index}: missing metric name (__name__)")
    return intern_labels(Labels.from_sorted(pairs))


def encode_write_request(
    series: Iterable[tuple[Labels, Iterable[tuple[int, float]]]],
) -> bytes:
    """Encode series as a snappy-compressed remote-write 1.0 body (used by the agent and tests).

    Labels are written in sorted order, as the spec requires. The protobuf bytes come from the light
    encoder in :mod:`sotp.codec.remote_write_encoder` (which the agent uses directly); snappy here is
    cramjam's, faster than the light encoder's pure-Python one on large bodies.
    """
    pairs = ((labels.items_tuple(), samples) for labels, samples in series)
    return snappy_compress(serialize_write_request(pairs))
