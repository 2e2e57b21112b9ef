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
