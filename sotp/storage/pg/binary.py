"""PostgreSQL binary formats with numpy: COPY buffers for block rows, and binary arrays back to arrays.

Binary COPY and binary arrays carry float8 as their 8 raw bytes, so every NaN payload (the staleness
marker ``0x7ff0000000000002`` above all) survives; a text format would print ``NaN`` and lose it.
All multi-byte numbers are big-endian. One binary array (``array_send``) is::

    int32 ndim (1, or 0 when empty) | int32 flags | int32 element oid | int32 length | int32 lower bound
    then per element: int32 byte length (8) | 8 bytes

so elements sit at a fixed stride of 12 bytes and ``np.frombuffer`` with a strided view reads them with no
per-sample Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"
INT8_OID = 20
FLOAT8_OID = 701
_ARRAY_HEADER = 20
_STRIDE = 12

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@lru_cache(maxsize=256)
def _row_dtype(n: int) -> np.dtype[np.void]:
    """The packed layout of one COPY row ``(series_id, t_min, t_max, ts int8[n], vals float8[n])``."""
    el_i = np.dtype([("len", ">i4"), ("v", ">i8")])
    el_u = np.dtype([("len", ">i4"), ("v", ">u8")])
    return np.dtype(
        [
            ("nfields", ">i2"),
            ("sid_len", ">i4"), ("sid", ">i8"),
            ("tmin_len", ">i4"), ("tmin", ">i8"),
            ("tmax_len", ">i4"), ("tmax", ">i8"),
            ("ts_len", ">i4"), ("ts_hdr", ">i4", (5,)), ("ts", el_i, (n,)),
            ("vs_len", ">i4"), ("vs_hdr", ">i4", (5,)), ("vs", el_u, (n,)),
        ]
    )


def copy_rows(sids: I64, ts: I64, vs: F64) -> bytes:
    """COPY rows (no header) for ``k`` blocks of ``n`` samples each: ``sids`` (k,), ``ts``/``vs`` (k, n).

    ``t_min``/``t_max`` are the first/last timestamp of each row (Unix ms, like ``ts``).
    """
    k, n = ts.shape
    rows = np.zeros(k, dtype=_row_dtype(n))
    rows["nfields"] = 5
    rows["sid_len"] = rows["tmin_len"] = rows["tmax_len"] = 8
    rows["sid"] = sids
    rows["tmin"] = ts[:, 0]
    rows["tmax"] = ts[:, -1]
    arr_len = _ARRAY_HEADER + _STRIDE * n
    rows["ts_len"] = rows["vs_len"] = arr_len
    rows["ts_hdr"] = (1, 0, INT8_OID, n, 1)
    rows["vs_hdr"] = (1, 0, FLOAT8_OID, n, 1)
    rows["ts"]["len"] = 8
    rows["ts"]["v"] = ts
    rows["vs"]["len"] = 8
    rows["vs"]["v"] = np.ascontiguousarray(vs, dtype=np.float64).view(np.uint64)
    return rows.tobytes()


def copy_blocks(blocks: Sequence[tuple[int, Sequence[int] | I64, Sequence[float] | F64]]) -> bytes:
    """COPY rows (no header) for blocks ``(series_id, ts, vs)``; rows of equal length are built together,
    so the Python work is per distinct block length, not per row or sample."""
    by_len: dict[int, list[int]] = {}
    for i, (_, ts, _) in enumerate(blocks):
        by_len.setdefault(len(ts), []).append(i)
    parts = []
    for idx in by_len.values():
        sids = np.fromiter((blocks[i][0] for i in idx), dtype=np.int64, count=len(idx))
        # One C-level conversion per group (lists of Python numbers or arrays alike).
        ts2 = np.array([blocks[i][1] for i in idx], dtype=np.int64)
        vs2 = np.array([blocks[i][2] for i in idx], dtype=np.float64)
        parts.append(copy_rows(sids, ts2, vs2))
    return b"".join(parts)


def copy_buffer(blocks: Sequence[tuple[int, Sequence[int] | I64, Sequence[float] | F64]]) -> bytes:
    """A complete binary COPY stream (header, rows, trailer) for blocks ``(series_id, ts, vs)``."""
    return COPY_HEADER + copy_blocks(blocks) + COPY_TRAILER


def _array_len(buf: bytes | memoryview, what: str) -> int:
    head = np.frombuffer(buf, dtype=">i4", count=min(5, len(buf) // 4))
    if len(head) < 3 or head[0] == 0:
        return 0
    if head[0] != 1 or len(head) < 5:
        raise ValueError(f"binary {what} array: expected one dimension, got {int(head[0])}")
    if head[1] != 0:
        raise ValueError(f"binary {what} array: NULL elements are not allowed in a block")
    return int(head[3])


def int8_array(buf: bytes | memoryview) -> I64:
    """An ``array_send(int8[])`` value as a native int64 array (one strided copy)."""
    n = _array_len(buf, "int8")
    view: np.ndarray = np.ndarray((n,), dtype=">i8", buffer=buf, offset=_ARRAY_HEADER + 4, strides=(_STRIDE,))
    return view.astype(np.int64)


def float8_array(buf: bytes | memoryview) -> F64:
    """An ``array_send(float8[])`` value as float64 with every bit kept (moved as uint64, never as float)."""
    n = _array_len(buf, "float8")
    view: np.ndarray = np.ndarray((n,), dtype=">u8", buffer=buf, offset=_ARRAY_HEADER + 4, strides=(_STRIDE,))
    return view.astype(np.uint64).view(np.float64)


def concat_elements(blob: bytes | memoryview, counts: I64, dtype: str) -> np.ndarray:
    """The elements of binary arrays concatenated in ``blob`` (``string_agg(array_send(x), '')``), whose
    lengths are ``counts``: each array is a 20-byte header then ``count`` 12-byte (length, value) elements.
    Dropping the headers leaves one 12-byte stride for all of them. ``dtype`` is ``>i8`` or ``>u8``; the
    result is in native byte order (one copy out of the blob)."""
    n_blocks = len(counts)
    total = int(counts.sum())
    buf = np.frombuffer(blob, dtype=np.uint8)
    if n_blocks == 0 or total == 0:
        return np.zeros(0, dtype=np.dtype(dtype).newbyteorder("="))
    if len(buf) != n_blocks * _ARRAY_HEADER + _STRIDE * total:
        raise ValueError(f"binary arrays: {len(buf)} bytes for {n_blocks} arrays of {total} elements")
    if bool((counts == counts[0]).all()):
        # All arrays the same length (fresh 10-sample blocks, or compacted ones): a 2-D view, no mask.
        # A 2-D strided view straight over the blob; the caller's astype is then the only copy.
        width = _ARRAY_HEADER + _STRIDE * int(counts[0])
        grid: np.ndarray = np.ndarray(
            (n_blocks, int(counts[0])), dtype=dtype, buffer=buf, offset=_ARRAY_HEADER + 4, strides=(width, _STRIDE)
        )
        return grid.astype(grid.dtype.newbyteorder("=")).reshape(-1)
    runs = np.empty(2 * n_blocks, dtype=np.int64)
    runs[0::2] = _ARRAY_HEADER
    runs[1::2] = _STRIDE * counts
    keep = np.zeros(2 * n_blocks, dtype=bool)
    keep[1::2] = True
    elements = buf[np.repeat(keep, runs)]
    view: np.ndarray = np.ndarray((total,), dtype=dtype, buffer=elements, offset=4, strides=(_STRIDE,))
    return view.astype(view.dtype.newbyteorder("="))
