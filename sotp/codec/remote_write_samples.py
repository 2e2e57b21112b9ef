"""Vectorised decoding of remote-write ``Sample`` messages: the decoder's hot loop, without a Python
object per sample.

The decoder parses ``TimeSeries.samples`` as raw bytes (one ``bytes`` per sample message, made by upb in
C) and hands them here in one list. Nearly every sample a Prometheus-compatible sender writes has the
canonical shape ``0x09 <8-byte double> 0x10 <varint timestamp>`` (fields in number order, both present);
those are decoded for all samples at once with numpy. Anything else (a value of +0.0 or a timestamp of 0
omitted as proto3 defaults, fields reordered or repeated, unknown fields) goes through ``parse_one``, the
protobuf runtime, so the result is always what a full protobuf parse gives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt


def decode_samples(
    chunks: Sequence[bytes], parse_one: Callable[[bytes], tuple[int, float]]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Timestamps and values of the serialized ``Sample`` messages ``chunks``, in order."""
    n = len(chunks)
    ts = np.zeros(n, dtype=np.int64)
    vs = np.zeros(n, dtype=np.float64)
    if n == 0:
        return ts, vs
    lens = np.fromiter(map(len, chunks), dtype=np.int64, count=n)
    joined = b"".join(chunks)
    width = int(lens[0])
    if 11 <= width <= 20 and bool((lens == width).all()):
        # The usual case: every sample has the same size, so the buffer is an (n, width) matrix.
        rows = np.frombuffer(joined, dtype=np.uint8).reshape(n, width)
        fast = _decode_rows(rows, np.full(n, width - 10), ts, vs)
    else:
        buf = np.frombuffer(joined + b"\x00" * 20, dtype=np.uint8)  # padding keeps gathers in bounds
        starts = np.cumsum(lens) - lens
        ok = (lens >= 11) & (lens <= 20)
        rows = buf[starts[:, None] + np.arange(20)[None, :]]
        fast = ok & _decode_rows(rows, lens - 10, ts, vs)
    for i in np.flatnonzero(~fast).tolist():
        t, v = parse_one(chunks[i])
        ts[i] = t
        vs[i] = v
    return ts, vs


def _decode_rows(
    rows: npt.NDArray[np.uint8], vlen: npt.NDArray[np.int64], ts: npt.NDArray[np.int64], vs: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    """Decode rows of ``0x09 <double> 0x10 <varint of vlen bytes>`` into ``ts``/``vs``; returns which
    rows really have that shape (the others hold garbage and must be parsed otherwise)."""
    n = len(rows)
    width = min(rows.shape[1] - 10, 10)
    fast = (vlen >= 1) & (vlen <= width) & (rows[:, 0] == 0x09) & (rows[:, 9] == 0x10)
    acc = np.zeros(n, dtype=np.uint64)
    for k in range(width):  # one vector operation per varint byte, not per sample
        col = rows[:, 10 + k]
        inside = k < vlen
        # The varint must end exactly at the end of the message: continuation bit on every byte but the last.
        fast &= ~inside | (((col & 0x80) != 0) == (k < vlen - 1))
        acc |= np.where(inside, col & 0x7F, 0).astype(np.uint64) << np.uint64(7 * k)
    ts[:] = acc.view(np.int64)
    vs[:] = np.ascontiguousarray(rows[:, 1:9]).view("<f8").reshape(n)
    result: npt.NDArray[np.bool_] = fast
    return result


#: A canonical ``Sample`` field inside a ``TimeSeries``: tag 0x12, length 16, then 0x09 <double> 0x10 and a
#: 6-byte varint (millisecond timestamps from 2039-ish back to 1971 take exactly 6 bytes).
_SAMPLE_FIELD = 18


def trailing_sample_counts(series: Sequence[bytes]) -> npt.NDArray[np.int64]:
    """How many canonical 18-byte ``Sample`` fields (tag 0x12, length 16) end each serialized ``TimeSeries``.

    Scanned from the end of all series at once, one vector step per sample position, so the live shape
    (one sample per series) costs two steps. A count can only be too high where label bytes imitate a
    sample field at an 18-byte boundary; the caller's parse of the remaining label bytes then fails and
    the request takes the general path.
    """
    n = len(series)
    counts = np.zeros(n, dtype=np.int64)
    if n == 0:
        return counts
    lens = np.fromiter(map(len, series), dtype=np.int64, count=n)
    buf = np.frombuffer(b"".join(series), dtype=np.uint8)
    ends = np.cumsum(lens)
    starts = ends - lens
    pos = ends - _SAMPLE_FIELD  # start of the next candidate field, per series
    live = np.flatnonzero(pos >= starts)
    while len(live):
        p = pos[live]
        ok = (buf[p] == 0x12) & (buf[p + 1] == 16)
        live = live[ok]
        counts[live] += 1
        pos[live] -= _SAMPLE_FIELD
        live = live[pos[live] >= starts[live]]
    return counts


def split_series(
    series: Sequence[bytes], counts: npt.NDArray[np.int64]
) -> tuple[list[bytes], npt.NDArray[np.int64], npt.NDArray[np.float64]] | None:
    """Split serialized ``TimeSeries`` messages into their label bytes and their samples, for all at once.

    ``counts[i]`` is the number of samples of ``series[i]`` (:func:`trailing_sample_counts`). Senders write
    labels first
    and samples last, so when the last ``18 * counts[i]`` bytes of every series are canonical sample fields,
    the bytes before them are exactly the series' labels (a protobuf parse from the start reaches that
    boundary; the caller checks, once per distinct prefix, that it holds labels only). Returns
    ``(label prefixes, timestamps, values)``, or ``None`` when any series has another shape.
    """
    n = len(series)
    lens = np.fromiter(map(len, series), dtype=np.int64, count=n)
    prefix = lens - _SAMPLE_FIELD * counts
    if n == 0 or bool((prefix < 0).any()):
        return None
    total = int(counts.sum())
    buf = np.frombuffer(b"".join(series), dtype=np.uint8)
    # Mark the sample bytes of every series (after its label prefix) and take them in one copy: the
    # tails are whole 18-byte fields, so the result is a (samples, 18) matrix.
    runs = np.empty(2 * n, dtype=np.int64)
    runs[0::2] = prefix
    runs[1::2] = lens - prefix
    pattern = np.zeros(2 * n, dtype=bool)
    pattern[1::2] = True
    rows = buf[np.repeat(pattern, runs)].reshape(total, _SAMPLE_FIELD)
    if not bool(((rows[:, 0] == 0x12) & (rows[:, 1] == 16)).all()):
        return None
    ts = np.zeros(total, dtype=np.int64)
    vs = np.zeros(total, dtype=np.float64)
    if not bool(_decode_rows(rows[:, 2:], np.full(total, 6), ts, vs).all()):
        return None
    prefixes = [s[:p] for s, p in zip(series, prefix.tolist(), strict=True)]
    return prefixes, ts, vs
