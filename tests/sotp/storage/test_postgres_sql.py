"""Unit tests of the PostgreSQL backend's pure parts: URL options, migration SQL, binary formats.

The TimescaleDB branch runs against a real TimescaleDB in test_timescaledb.py; the binary COPY/array code
is checked against PostgreSQL in test_postgres.py as well."""

from __future__ import annotations

import numpy as np
import pytest

from sotp.errors import ConfigError
from sotp.model import STALE_NAN
from sotp.storage.assemble import merge_blocks
from sotp.storage.pg import binary
from sotp.storage.pg.options import parse_url
from sotp.storage.pg.schema import (
    MIGRATIONS,
    MODE_PARTITIONS,
    MODE_TIMESCALE,
    partition_name,
)
from sotp.storage.pg.timescale import hypertable_statements


def test_url_options_are_removed_before_libpq() -> None:
    o = parse_url("postgresql://u@h:5/db?schema=s1&partition=12h&block=30m&pool_max=8&sslmode=disable")
    assert o.conninfo == "postgresql://u@h:5/db?sslmode=disable"
    assert (o.schema, o.partition_ms, o.block_ms, o.pool_max) == ("s1", 43_200_000, 1_800_000, 8)
    assert parse_url("postgres://u@h/db").conninfo == "postgresql://u@h/db"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("schema=Bad-Name", "plain lowercase identifier"),
        ("partition=90m&block=1h", "whole multiple of block"),
        ("timescaledb=maybe", "auto, on or off"),
        ("pool_max=zero", "integer >= 1"),
        ("block=soon", "invalid duration"),
    ],
    ids=["schema", "partition-multiple", "timescale-mode", "pool", "duration"],
)
def test_bad_url_options_name_the_parameter(query: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_url(f"postgresql://u@h/db?{query}")


def test_migrations_differ_only_in_partitioning() -> None:
    opts = parse_url("postgresql://u@h/db")
    hypertable = hypertable_statements(opts.partition_ms, opts.compress_after_ms)
    for m in MIGRATIONS:
        native = [s.removesuffix(" PARTITION BY RANGE (t_min)") for s in m.statements(MODE_PARTITIONS, opts)]
        tsdb = m.statements(MODE_TIMESCALE, opts)
        assert not any("PARTITION" in s for s in tsdb), m.version
        # The native side copies its partitions in a DO block; TimescaleDB creates its hypertable instead.
        assert [s for s in tsdb if s not in hypertable] == [
            s.replace("'partitions'", "'timescaledb'") for s in native if "PARTITION OF" not in s
        ], m.version
    v3 = next(m for m in MIGRATIONS if m.version == 3).statements(MODE_TIMESCALE, opts)
    assert [s for s in v3 if s in hypertable] == hypertable


def test_partition_names() -> None:
    assert partition_name(1_577_836_800_000, 86_400_000) == "sotp_samples_p20200101"
    assert partition_name(1_577_836_800_000 + 7_200_000, 7_200_000) == "sotp_samples_p20200101_020000"


def test_copy_rows_layout_and_array_decoding_round_trip() -> None:
    ts = np.array([[1000, 2000], [5, 6]], dtype=np.int64)
    vs = np.array([[STALE_NAN, -0.0], [np.inf, 1.5]])
    raw = binary.copy_rows(np.array([7, 8], dtype=np.int64), ts, vs)
    row = np.frombuffer(raw, dtype=binary._row_dtype(2))
    assert row["nfields"].tolist() == [5, 5] and row["sid"].tolist() == [7, 8]
    assert row["tmin"].tolist() == [1000, 5]
    # An array value as array_send produces it is the same bytes as the COPY field after its length.
    arr = row["vs"][0].tobytes()
    header = row["vs_hdr"][0].astype(">i4").tobytes()
    decoded = binary.float8_array(header + arr)
    assert decoded.view(np.uint64).tolist() == vs[0].view(np.uint64).tolist()
    assert binary.int8_array(row["ts_hdr"][1].astype(">i4").tobytes() + row["ts"][1].tobytes()).tolist() == [5, 6]


def test_merge_blocks_sorts_and_keeps_first_of_equal_times() -> None:
    a = (np.array([1, 3], dtype=np.int64), np.array([1.0, 3.0]))
    b = (np.array([2, 3], dtype=np.int64), np.array([2.0, 9.0]))
    ts, vs = merge_blocks([a, b])
    assert ts.tolist() == [1, 2, 3] and vs.tolist() == [1.0, 2.0, 3.0]


def test_fetch_parts_use_all_but_one_connection_and_stay_bounded() -> None:
    from sotp.storage.pg.query import _chunks

    ids = list(range(1000))
    assert [len(c) for c in _chunks(ids, 4)] == [334, 334, 332]  # three lanes, one connection left over
    assert _chunks(ids, 1) == [ids] == _chunks(ids, 2)  # a single lane: one query
    assert [len(c) for c in _chunks(ids[:500], 8)] == [300, 200]  # parts not below 300 series
    assert _chunks([], 4) == [[]]
    assert max(len(c) for c in _chunks(list(range(100_000)), 2)) == 20_000
