"""The PostgreSQL storage URL: a libpq URL plus SOTP's own query parameters, which are removed before
libpq sees them.

``postgresql://user@host:5432/db?schema=sotp&partition=1d&block=2h&pool_max=4``

* ``schema`` — the schema holding SOTP's tables (created when missing; default ``public``). Tests use one
  fresh schema each so they can run in parallel on one database.
* ``partition`` — the partition (or TimescaleDB chunk) interval, a whole multiple of ``block``.
* ``block`` — the compaction window: a block row never spans two windows, and the compactor merges a
  series' rows of one closed window into one.
* ``partitions_ahead`` — how many future partitions the service keeps created.
* ``pool_min`` / ``pool_max`` — connection pool size.
* ``pool_timeout`` — how long a request waits for a connection before it fails as unavailable (503).
* ``timescaledb`` — ``auto`` (use it when ``pg_available_extensions`` lists it), ``on`` or ``off``.
* ``compress_after`` — TimescaleDB only: compress chunks older than this.
* ``head_window``, ``head_grace``, ``head_max_samples`` — when the in-memory head is flushed into block
  rows (:class:`sotp.storage.head.FlushPolicy`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sotp.config import parse_duration
from sotp.errors import ConfigError
from sotp.storage.head import HEAD_KEYS, FlushPolicy, policy_from_params

_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_OWN_KEYS = {
    "schema", "partition", "block", "partitions_ahead", "pool_min", "pool_max", "pool_timeout", "timescaledb",
    "compress_after", *HEAD_KEYS,
}


@dataclass(frozen=True, slots=True)
class PgOptions:
    """Parsed storage URL."""

    conninfo: str
    schema: str = "public"
    partition_ms: int = 86_400_000
    block_ms: int = 7_200_000
    partitions_ahead: int = 2
    pool_min: int = 1
    pool_max: int = 4
    pool_timeout_s: float = 10.0
    timescaledb: str = "auto"
    compress_after_ms: int = 7 * 86_400_000
    policy: FlushPolicy = field(default_factory=FlushPolicy)


def _ms(value: str, key: str) -> int:
    ms = round(parse_duration(value, f"storage URL parameter {key}") * 1000)
    if ms <= 0:
        raise ConfigError(f"storage URL parameter {key}: duration must be positive, got {value!r}")
    return ms


def _int(value: str, key: str, low: int) -> int:
    try:
        n = int(value)
    except ValueError:
        n = low - 1
    if n < low:
        raise ConfigError(f"storage URL parameter {key}: expected an integer >= {low}, got {value!r}")
    return n


def parse_url(url: str) -> PgOptions:
    """Split ``url`` into the libpq conninfo and SOTP's options; raise :class:`ConfigError` on bad values."""
    parts = urlsplit(url)
    if parts.scheme == "postgres":
        parts = parts._replace(scheme="postgresql")
    own: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _OWN_KEYS:
            own[key] = value
        else:
            rest.append((key, value))
    conninfo = urlunsplit(parts._replace(query=urlencode(rest)))
    schema = own.get("schema", "public")
    if not _IDENT_RE.match(schema):
        raise ConfigError(
            f"storage URL parameter schema: {schema!r} is not a plain lowercase identifier ([a-z_][a-z0-9_]*)"
        )
    block_ms = _ms(own.get("block", "2h"), "block")
    partition_ms = _ms(own.get("partition", "1d"), "partition")
    if partition_ms % block_ms:
        raise ConfigError(
            f"storage URL parameter partition ({partition_ms} ms) must be a whole multiple of block "
            f"({block_ms} ms), so that no block row straddles two partitions"
        )
    mode = own.get("timescaledb", "auto")
    if mode not in ("auto", "on", "off"):
        raise ConfigError(f"storage URL parameter timescaledb: expected auto, on or off, got {mode!r}")
    pool_min = _int(own.get("pool_min", "1"), "pool_min", 1)
    pool_max = _int(own.get("pool_max", "4"), "pool_max", 1)
    return PgOptions(
        conninfo=conninfo,
        schema=schema,
        partition_ms=partition_ms,
        block_ms=block_ms,
        partitions_ahead=_int(own.get("partitions_ahead", "2"), "partitions_ahead", 0),
        pool_min=pool_min,
        pool_max=max(pool_min, pool_max),
        pool_timeout_s=_ms(own.get("pool_timeout", "10s"), "pool_timeout") / 1000,
        timescaledb=mode,
        compress_after_ms=_ms(own.get("compress_after", "7d"), "compress_after"),
        policy=policy_from_params(own, "PostgreSQL storage URL"),
    )
