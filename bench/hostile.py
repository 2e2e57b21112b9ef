"""How responsive a server stays while it ingests a large remote-write request (issue 17, finding 11).

``sotp serve`` (SQLite, its embedded default) and Debian's Prometheus 2.42 (remote-write receiver on) each
get the same requests of 100,000 new series (one sample each, ~1.1 MB snappy); meanwhile a second client
asks ``/-/healthy`` every 10 ms. Printed per server: the write's time, and the health check's median, p99
and worst latency while writes run, with SOTP's figures as ratios of Prometheus's measured in the same run.
Before the fix SOTP decoded on its event loop: the health check waited ~1.5 s behind each request.

    .venv/bin/python -m bench.hostile [--series 100000] [--requests 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.servers import Server, serving, start_prometheus, start_sotp
from sotp.codec.remote_write import encode_write_request
from sotp.model import Labels

HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
           "X-Prometheus-Remote-Write-Version": "0.1.0"}


def payloads(series: int, requests: int) -> list[bytes]:
    now = int(time.time() * 1000)
    return [
        encode_write_request([(Labels({"__name__": "bench_hostile", "r": str(r), "i": str(i)}), [(now, 1.0)])
                              for i in range(series)])
        for r in range(requests)
    ]


async def measure(server: Server, bodies: list[bytes]) -> tuple[list[float], list[float]]:
    """(seconds per write, health-check latencies in seconds while the writes ran)."""
    writes: list[float] = []
    health: list[float] = []
    done = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        async def poll() -> None:
            while not done.is_set():
                started = time.perf_counter()
                async with session.get(f"{server.base}/-/healthy") as r:
                    await r.read()
                health.append(time.perf_counter() - started)
                await asyncio.sleep(0.01)

        poller = asyncio.create_task(poll())
        for body in bodies:
            started = time.perf_counter()
            async with session.post(server.write_url, data=body, headers=HEADERS) as r:
                text = await r.text()
                if r.status // 100 != 2:
                    raise RuntimeError(f"{server.name}: write answered {r.status}: {text[:200]}")
            writes.append(time.perf_counter() - started)
        done.set()
        await poller
    return writes, health


def summary(name: str, writes: list[float], health: list[float]) -> dict[str, float]:
    cut = sorted(health)
    figures = {
        "write_s": statistics.median(writes),
        "health_p50_ms": 1000 * statistics.median(cut),
        "health_p99_ms": 1000 * cut[min(len(cut) - 1, int(len(cut) * 0.99))],
        "health_max_ms": 1000 * cut[-1],
    }
    print(f"{name:>12}: write {figures['write_s']:.2f}s (median of {len(writes)}), /-/healthy during writes: "
          f"p50 {figures['health_p50_ms']:.1f} ms, p99 {figures['health_p99_ms']:.1f} ms, "
          f"max {figures['health_max_ms']:.1f} ms ({len(health)} checks)", flush=True)
    return figures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=3)
    args = p.parse_args()
    bodies = payloads(args.series, args.requests)
    print(f"{args.requests} requests of {args.series:,} series, {len(bodies[0]) / 1e6:.1f} MB each", flush=True)
    work = Path(tempfile.mkdtemp(prefix="sotp-bench-hostile-"))
    results = {}
    with serving(lambda: start_sotp(f"sqlite:///{work}/sotp.db", work)) as sotp:
        results["sotp"] = summary("sotp", *asyncio.run(measure(sotp, bodies)))
    with serving(lambda: start_prometheus(work)) as prom:
        results["prometheus"] = summary("prometheus", *asyncio.run(measure(prom, bodies)))
    s, r = results["sotp"], results["prometheus"]
    print("ratios sotp/prometheus: " + ", ".join(f"{k} {s[k] / r[k]:.1f}×" for k in s if r[k] > 0), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
