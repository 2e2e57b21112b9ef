"""TimescaleDB vs plain PostgreSQL vs Prometheus 2.42, one run, same data: ingest, dashboard queries, bytes/sample.

Every target is loaded through its HTTP remote-write endpoint with the same pre-encoded payloads from
bench/loadgen.py in the live shape (1 sample per series per request, 2,000 series per request, 4 concurrent
senders; 10,000 series × 2 h at 15 s by default), and checked afterwards with ``count_over_time``. SOTP is the
real ``sotp serve`` on a fresh PostgreSQL schema (native partitions) and on a fresh TimescaleDB database
(``timescaledb=on``); Prometheus runs with ``--web.enable-remote-write-receiver --web.enable-admin-api``.

Per SOTP backend:

1. **ingest**: samples/s of the whole load (the clock covers every request of the 4 senders);
2. **queries as loaded**: the dashboard set of bench/query.py (range queries over the last hour at 15 s and
   60 s steps, median of ``--repeat``), each query on SOTP then on Prometheus;
3. **blocks**: ``sotp serve`` stops; in this process the store's head is flushed whole into block rows, block
   rows are compacted (``compact`` with "now" two blocks past the data) and the SOTP tables are
   ``VACUUM FULL``-ed so dead rows of the compaction do not count; ``sotp serve`` starts again and the set runs
   again (what dashboards read for data older than the head);
4. **compressed** (TimescaleDB): every chunk is compressed (``compress_chunk``, what the compression policy
   does once a chunk passes ``compress_after``) and the set runs once more (what week-old data costs);
5. **bytes/sample** after the last step: the samples table (``hypertable_size`` for TimescaleDB, the
   partitions' ``pg_total_relation_size`` for PostgreSQL) and every SOTP table (series, labels, log included),
   divided by the samples loaded.

Prometheus's head is written to a block by a TSDB snapshot (admin API; the head is persisted as a block
like a head compaction would) and measured with ``du`` (allocated bytes) of that block; its data dir
before the snapshot (WAL + head chunks) is printed too. Prometheus's query figures are those of its head.

    .venv/bin/python bench/timescaledb.py                       # 10,000 series × 2 h, both backends
    .venv/bin/python bench/timescaledb.py --series 2000 --minutes 30 --repeat 3    # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen, servers
from bench.loadgen import Dataset, Load, SendResult
from bench.query import Timing, query_set
from bench.servers import Server

BACKENDS = ("postgresql", "timescaledb")


@dataclass
class Size:
    """Bytes on disk: the samples alone and everything the target stores."""

    samples: int
    total: int


@dataclass
class Run:
    name: str
    sent: SendResult
    check: str
    #: Query timings by state: "head" (as loaded), "blocks" (flushed, compacted), "compressed" (TimescaleDB).
    timings: dict[str, list[Timing]]
    size: Size


def du_bytes(path: Path) -> int:
    """Allocated bytes under ``path`` (what ``du`` reports)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def prometheus_block_size(prom: Server, workdir: Path) -> tuple[Size, int]:
    """(the snapshot's block(s), the data dir before it): the head written out as a block by the TSDB."""
    (data_dir,) = workdir.glob("prometheus-tsdb-*")
    before = du_bytes(data_dir)
    req = urllib.request.Request(f"{prom.base}/api/v1/admin/tsdb/snapshot", method="POST")
    with urllib.request.urlopen(req, timeout=600) as resp:
        name = json.load(resp)["data"]["name"]
    snap = data_dir / "snapshots" / name
    blocks = [d for d in snap.iterdir() if d.is_dir()]
    chunks = sum(du_bytes(d / "chunks") for d in blocks)
    return Size(chunks, du_bytes(snap)), before


def sql_rows(dsn: str, query: str, *params: object) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params or None)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def split_url(url: str) -> tuple[str, str]:
    """(libpq DSN without SOTP's options, SOTP schema) of a storage URL."""
    from sotp.storage.pg.options import parse_url

    opts = parse_url(url)
    return opts.conninfo, opts.schema


def settle(url: str, data: Dataset) -> str:
    """Flush the head whole into block rows, compact them, VACUUM FULL the SOTP tables: says what it did."""
    return asyncio.run(_settle(url, data))


async def _settle(url: str, data: Dataset) -> str:
    from sotp.storage.postgres import PostgresStorage

    store = PostgresStorage(url)
    await store.open()
    try:
        started = time.perf_counter()
        _, newest, n = store.head.span()
        flushed = await store.flush(before=newest + 1) if n else 0
        removed = await store.compact(data.end_ms + 2 * store.block_ms)
    finally:
        await store.close()
    vacuum(url)
    return (f"flushed {flushed:,} head samples, compaction removed {removed:,} rows, SOTP tables vacuumed, "
            f"in {time.perf_counter() - started:.1f} s")


def compress(url: str, data: Dataset) -> str:
    """Compress every chunk (what the compression policy does once a chunk passes ``compress_after``)."""
    dsn, schema = split_url(url)
    started = time.perf_counter()
    rows = sql_rows(dsn, "SELECT count(compress_chunk(c, if_not_compressed => true)) "
                    "FROM show_chunks((quote_ident(%s) || '.sotp_samples')::regclass) c", schema)
    vacuum(url)
    return f"{rows[0][0]} chunk(s) compressed in {time.perf_counter() - started:.1f} s"


def vacuum(url: str) -> None:
    """VACUUM FULL every SOTP table, so dead rows left by compaction do not count as stored data."""
    dsn, schema = split_url(url)
    for (table,) in sql_rows(dsn, "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
                             "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                             schema):
        sql_rows(dsn, f"VACUUM (FULL, ANALYZE) {table}")


def sotp_size(url: str) -> tuple[Size, str]:
    """Bytes of the samples table and of every SOTP table, and a breakdown to print."""
    dsn, schema = split_url(url)
    rels = sql_rows(
        dsn,
        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY 2 DESC",
        schema,
    )
    sizes = {str(name): int(size) for name, size in rels}  # type: ignore[call-overload]
    mode = sql_rows(dsn, f'SELECT value FROM "{schema}".sotp_meta WHERE key = %s', "mode")
    if mode == [("timescaledb",)]:
        (samples,) = sql_rows(dsn, "SELECT hypertable_size((quote_ident(%s) || '.sotp_samples')::regclass)", schema)[0]
        samples = int(samples)  # type: ignore[call-overload]
        stats = sql_rows(dsn, "SELECT sum(before_compression_total_bytes), sum(after_compression_total_bytes) "
                         "FROM chunk_compression_stats((quote_ident(%s) || '.sotp_samples')::regclass)", schema)
        detail = f"compression {stats[0][0]:,} → {stats[0][1]:,} bytes" if stats and stats[0][0] else "not compressed"
        sizes["sotp_samples"] = samples
    else:
        samples = sum(v for k, v in sizes.items() if k.startswith("sotp_samples"))
        detail = f"{sum(1 for k in sizes if k.startswith('sotp_samples_p'))} partitions"
    other = ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()
                      if not k.startswith("sotp_samples") and v > 65536)
    total = samples + sum(v for k, v in sizes.items() if not k.startswith("sotp_samples"))
    return Size(samples, total), f"samples {samples / 1e6:.1f} MB ({detail}); {other}"


def run_backend(name: str, prom: Server, data: Dataset, load: Load, args: argparse.Namespace, tmp: Path) -> Run:
    with servers.fresh_backend(name, args, tmp) as backend:
        start = lambda: servers.start_sotp(backend.url, tmp, f"sotp-{name}")  # noqa: E731
        print(f"\n== {name} (load average {servers.load_average()})", flush=True)
        with servers.serving(start) as sotp:
            sent = loadgen.send(sotp.write_url, load)
            print(f"  ingest: {sent.describe()}", flush=True)
            check = loadgen.verify(sotp.base, data).describe()
            print(f"  check: {check}", flush=True)
            timings = {"head": query_set(sotp, prom, data, args.repeat, f"{name}, as loaded (in the head)")}
        steps = [("blocks", settle, "flushed into block rows and compacted")]
        if name == "timescaledb":
            steps.append(("compressed", compress, "every chunk compressed"))
        size = Size(0, 0)
        for state, step, what in steps:
            print(f"  {state}: {step(backend.url, data)}", flush=True)
            size, breakdown = sotp_size(backend.url)
            print(f"  on disk: {breakdown}; {size.samples / data.samples:.2f} bytes/sample (samples), "
                  f"{size.total / data.samples:.2f} (all SOTP tables)", flush=True)
            with servers.serving(start) as sotp:
                timings[state] = query_set(sotp, prom, data, args.repeat, f"{name}, {what}")
        return Run(name, sent, check, timings, size)


def print_tables(runs: list[Run], prom_sent: SendResult, prom_size: Size, prom_dir: int, samples: int) -> None:
    print("\n| target | ingest samples/s | ratio to Prometheus | bytes/sample: samples | bytes/sample: all |")
    print("|---|---:|---:|---:|---:|")
    print(f"| Prometheus 2.42 | {prom_sent.samples_per_s:,.0f} | 1.00× | {prom_size.samples / samples:.2f} (chunks) | "
          f"{prom_size.total / samples:.2f} (block; data dir before: {prom_dir / samples:.2f}) |")
    for r in runs:
        ratio = r.sent.samples_per_s / prom_sent.samples_per_s
        print(f"| SOTP on {r.name} | {r.sent.samples_per_s:,.0f} | {ratio:.2f}× "
              f"| {r.size.samples / samples:.2f} | {r.size.total / samples:.2f} |")
    cols = [(r, state) for r in runs for state in r.timings]
    print("\nSOTP ms (ratio to Prometheus's time for the same query, measured right after it); Prometheus: its head")
    print("\n| query | step | Prometheus ms (median) | " + " | ".join(f"{r.name}: {s}" for r, s in cols) + " |")
    print("|---|---:|---:|" + "---:|" * len(cols))
    for i, t in enumerate(runs[0].timings["head"] if runs else []):
        prom_ms = statistics.median(r.timings[s][i].prom_ms for r, s in cols)
        cells = [f"{r.timings[s][i].sotp_ms:,.1f} ({r.timings[s][i].ratio:.2f}×)" for r, s in cols]
        print(f"| `{t.query}` | {t.step} s | {prom_ms:,.1f} | " + " | ".join(cells) + " |")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", type=int, default=10_000)
    p.add_argument("--minutes", type=int, default=120, help="time span of the data (queries cover the last hour)")
    p.add_argument("--step", type=int, default=15, help="seconds between samples")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per query (median), after one warm-up")
    p.add_argument("--backends", default=",".join(BACKENDS), help=f"of {', '.join(BACKENDS)}")
    p.add_argument("--pg-dsn", default=servers.DEFAULT_PG, help="PostgreSQL (a fresh schema per run)")
    p.add_argument("--timescale-dsn", default=servers.DEFAULT_TIMESCALE,
                   help="TimescaleDB (a fresh database per run, timescaledb=on)")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    data = loadgen.make_dataset(args.series, args.minutes * 60, args.step)
    load = loadgen.encode(data, loadgen.LIVE)
    print(f"dataset: {data.describe()}; {loadgen.LIVE.describe()}; {load.describe()}; "
          f"{os.cpu_count()} CPUs, load average {servers.load_average()}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="sotp-bench-timescaledb-"))
    runs: list[Run] = []
    try:
        start_prom = lambda: servers.start_prometheus(tmp, extra_args=("--web.enable-admin-api",))  # noqa: E731
        with servers.serving(start_prom) as prom:
            prom_sent = loadgen.send(prom.write_url, load)
            print(f"prometheus ingest: {prom_sent.describe()}", flush=True)
            print(f"prometheus check: {loadgen.verify(prom.base, data).describe()}", flush=True)
            for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
                try:
                    runs.append(run_backend(name, prom, data, load, args, tmp))
                except servers.BackendUnavailable as err:
                    print(f"\n{name}: skipped, database unreachable: {err}", flush=True)
            prom_size, prom_dir = prometheus_block_size(prom, tmp)
            print(f"\nprometheus: data dir {prom_dir / 1e6:.1f} MB before the snapshot; snapshot block "
                  f"{prom_size.total / 1e6:.1f} MB (chunks {prom_size.samples / 1e6:.1f} MB)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_tables(runs, prom_sent, prom_size, prom_dir, data.samples)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
