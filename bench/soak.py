"""Soak (issue 18): ``sotp serve`` under steady remote-write load at half its measured capacity, queries running,
for ``--minutes`` (default 10). Flat is the goal: RSS and the p99 write latency at minute 10 should be those of
minute 1.

1. Capacity: the senders send as fast as the server answers for ``--capacity-seconds``; the acknowledged
   samples per second are the capacity (or ``--rate`` gives the soak rate and skips this).
2. Soak: the same senders, paced to half the capacity. ``--series`` series (counters ``soak_c`` and gauges
   ``soak_g``, ``job`` ``soak-0`` … ``soak-9``), each always through the same one of ``--senders`` senders, one
   sample of every owned series per request at the wall-clock time — the live shape Prometheus's shards send,
   only faster. A query client runs the dashboard queries below back to back (``--query-pause`` apart).
   Every minute prints: samples/s acknowledged, write latency p50/p99, query latency p99, non-2xx answers,
   the server's RSS (its process tree) and, for PostgreSQL, nothing about the database's own memory.

Samples are encoded while the clock runs (~2.4 µs per series with SOTP's encoder), in the same process as the
senders: on a small machine the load generator takes CPU from the server, so the capacity is that of the
server beside its load generator, and the soak rate half of it.

    .venv/bin/python bench/soak.py                                   # 10 minutes on SQLite
    .venv/bin/python bench/soak.py --minutes 2 --capacity-seconds 20 # a quick look
    .venv/bin/python bench/soak.py --backends postgresql --rate 40000
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import servers
from bench.loadgen import HEADERS
from sotp.codec.remote_write import snappy_compress
from sotp.codec.remote_write_encoder import encode_label_fields, encode_timeseries_raw

QUERIES = (
    "sum by (job) (rate(soak_c[1m]))",
    'rate(soak_c{instance="i-7"}[5m])',
    "topk(5, avg_over_time(soak_g[1m]))",
    "count(soak_g)",
)
RANGE_QUERY = "sum by (job) (rate(soak_c[1m]))"


@dataclass
class Window:
    """What happened in one reporting window (a minute of the soak, or the capacity phase)."""

    samples: int = 0
    write_latencies: list[float] = field(default_factory=list)
    query_latencies: list[float] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)
    lag_s: float = 0.0  # how far the most-behind sender was behind its schedule at the window's end


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class Load:
    """The senders and the query client; ``window`` collects into the current reporting window."""

    def __init__(self, base: str, n_series: int, senders: int):
        self.base = base
        self.window = Window()
        owned: list[list[bytes]] = [[] for _ in range(senders)]
        for i in range(n_series):
            name = "soak_c" if i % 2 == 0 else "soak_g"
            labels = (("__name__", name), ("instance", f"i-{i}"), ("job", f"soak-{i % 10}"))
            owned[i % senders].append(encode_label_fields(labels))
        self.owned = owned
        self.rounds = 0
        self.stop = False

    def body(self, sender: int, r: int, t_ms: int) -> tuple[bytes, int]:
        fields = self.owned[sender]
        # counters grow by a step each round; gauges wander over a small range: realistic compressibility
        parts = [encode_timeseries_raw(f, [(t_ms, float(r * 7 + k) if k % 2 == 0 else float((r + k) % 97))])
                 for k, f in enumerate(fields)]
        return snappy_compress(b"".join(parts)), len(fields)

    async def sender(self, session: aiohttp.ClientSession, sender: int, interval_s: float | None) -> None:
        """Round after round; paced to ``interval_s`` per round when given (catching up without sleeping when
        behind), else as fast as the server answers. A failed request is retried (after 0.2 s) with the same
        body, as a remote-write sender would."""
        started = time.monotonic()
        last_t = 0
        r = 0
        while not self.stop:
            if interval_s is not None:
                due = started + r * interval_s
                now = time.monotonic()
                if due > now:
                    await asyncio.sleep(due - now)
                self.window.lag_s = max(self.window.lag_s, time.monotonic() - due)
            last_t = max(last_t + 1, int(time.time() * 1000))
            body, n = self.body(sender, r, last_t)
            while not self.stop:
                t0 = time.perf_counter()
                try:
                    async with session.post(self.base + "/api/v1/write", data=body, headers=HEADERS) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                win = self.window
                win.write_latencies.append(time.perf_counter() - t0)
                if 200 <= status < 300:
                    win.samples += n
                    break
                win.errors[status] = win.errors.get(status, 0) + 1
                await asyncio.sleep(0.2)
            r += 1

    async def querier(self, session: aiohttp.ClientSession, pause_s: float) -> None:
        while not self.stop:
            now = time.time()
            for expr in QUERIES:
                await self._get(session, "/api/v1/query", {"query": expr, "time": f"{now:.3f}"})
            await self._get(session, "/api/v1/query_range", {"query": RANGE_QUERY, "start": f"{now - 300:.3f}",
                                                              "end": f"{now:.3f}", "step": "15"})
            await asyncio.sleep(pause_s)

    async def _get(self, session: aiohttp.ClientSession, path: str, params: dict[str, str]) -> None:
        t0 = time.perf_counter()
        try:
            async with session.get(self.base + path, params=params) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        self.window.query_latencies.append(time.perf_counter() - t0)
        if status != 200:
            key = -status or -1  # queries' failures are negative codes, kept apart from the writes'
            self.window.errors[key] = self.window.errors.get(key, 0) + 1


async def capacity(base: str, args: argparse.Namespace) -> float:
    """Acknowledged samples per second with the senders unpaced (queries off) for ``--capacity-seconds``."""
    load = Load(base, args.series, args.senders)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        tasks = [asyncio.create_task(load.sender(session, s, None)) for s in range(args.senders)]
        await asyncio.sleep(5)  # warm-up: series created, first flush of caches
        load.window = Window()
        started = time.monotonic()
        await asyncio.sleep(args.capacity_seconds)
        win, elapsed = load.window, time.monotonic() - started
        load.stop = True
        await asyncio.gather(*tasks)
    rate = win.samples / elapsed
    print(f"capacity: {rate:,.0f} samples/s over {elapsed:.0f} s (write p99 {pct(win.write_latencies, 0.99) * 1000:.0f}"
          f" ms, errors {win.errors or 'none'})", flush=True)
    return rate


async def soak(server: servers.Server, rate: float, args: argparse.Namespace) -> list[str]:
    load = Load(server.base, args.series, args.senders)
    interval = args.series / rate  # one round = one sample of every series
    print(f"soak: {rate:,.0f} samples/s = a round of {args.series:,} series every {interval * 1000:.0f} ms, "
          f"{args.senders} senders, queries every {args.query_pause} s, {args.minutes} min", flush=True)
    rows = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        tasks = [asyncio.create_task(load.sender(session, s, interval)) for s in range(args.senders)]
        tasks.append(asyncio.create_task(load.querier(session, args.query_pause)))
        started = time.monotonic()
        for minute in range(1, args.minutes + 1):
            await asyncio.sleep(max(0.0, started + minute * 60 - time.monotonic()))
            win, load.window = load.window, Window()
            row = (f"| {minute} | {win.samples / 60:,.0f} | {pct(win.write_latencies, 0.5) * 1000:.0f} | "
                   f"{pct(win.write_latencies, 0.99) * 1000:.0f} | {pct(win.query_latencies, 0.99) * 1000:.0f} | "
                   f"{len(win.query_latencies)} | {sum(win.errors.values())} | {win.lag_s:.1f} | "
                   f"{server.rss_mib():.0f} |")
            rows.append(row)
            print(row, flush=True)
        load.stop = True
        await asyncio.gather(*tasks)
    return rows


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=int, default=10, help="length of the soak")
    p.add_argument("--rate", type=float, help="soak rate in samples/s (default: half the measured capacity)")
    p.add_argument("--capacity-seconds", type=int, default=60, help="length of the capacity measurement")
    p.add_argument("--series", type=int, default=10_000)
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--query-pause", type=float, default=1.0, help="seconds between rounds of dashboard queries")
    servers.add_backend_args(p)
    p.set_defaults(backends="sqlite")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    print(f"load average at start: {servers.load_average()}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="sotp-bench-soak-"))
    try:
        for name in servers.chosen_backends(args):
            with servers.fresh_backend(name, args, tmp) as backend, \
                    servers.serving(functools.partial(servers.start_sotp, backend.url, tmp, f"sotp-{name}",
                                                      args.serve_args)) as server:
                rate = args.rate or asyncio.run(capacity(server.base, args)) / 2
                rows = asyncio.run(soak(server, rate, args))
                print(f"\n{name}, {rate:,.0f} samples/s target ({args.series:,} series, {args.senders} senders):")
                print("| minute | samples/s acked | write p50 ms | write p99 ms | query p99 ms | queries | "
                      "non-2xx | sender lag s | RSS MiB |")
                print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
                print("\n".join(rows), flush=True)
                print(f"load average at the end: {servers.load_average()}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
