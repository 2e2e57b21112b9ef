"""Query latency: SOTP's PromQL engine over PostgreSQL (or any storage URL) beside Debian's Prometheus 2.42.

Loads 10,000 series x 2 h at 15 s (5,000 counters ``m``, 4,000 gauges ``g``, 100 histograms x 10
buckets ``h_bucket``) into the SOTP storage (through its Appender) and into a real Prometheus (remote
write in time order), then times the dashboard set as 1 h range queries at 15 s and 60 s steps over
HTTP: SOTP runs ``query.api`` in its own process (``--serve``), Prometheus is the reference. Prints the
median latency of each query on both and the ratio.

    .venv/bin/python bench/query.py                                  # PostgreSQL at SOTP_TEST_PG_DSN
    .venv/bin/python bench/query.py --storage sqlite:///tmp/q.db --series 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sotp.codec.remote_write import encode_write_request  # noqa: E402
from sotp.model import Labels  # noqa: E402

STEP_MS = 15_000
HOURS = 2
QUERIES = [
    "sum by (job) (rate(m[5m]))",
    'rate(m{instance="i-7"}[5m])',
    "topk(5, avg_over_time(g[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))",
]
BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]


def dataset(n_series: int, end_ms: int) -> list[tuple[Labels, np.ndarray, np.ndarray]]:
    """Counters (half), gauges (40 %), histograms (10 %, 10 buckets each) over 2 h at 15 s."""
    rng = np.random.default_rng(42)
    n = HOURS * 3600_000 // STEP_MS
    ts = end_ms - STEP_MS * np.arange(n, dtype=np.int64)[::-1]
    out = []
    n_m, n_g = n_series // 2, n_series * 2 // 5
    for i in range(n_m):
        vals = np.cumsum(rng.integers(0, 100, n)).astype(np.float64)
        out.append((Labels({"__name__": "m", "job": f"job-{i % 10}", "instance": f"i-{i}"}), ts, vals))
    for i in range(n_g):
        vals = np.round(50 + np.cumsum(rng.normal(0, 1, n)), 3)
        out.append((Labels({"__name__": "g", "job": f"job-{i % 10}", "instance": f"i-{i}"}), ts, vals))
    for h in range((n_series - n_m - n_g) // len(BUCKETS)):
        obs = rng.integers(0, 20, (n, len(BUCKETS)))
        cum = np.cumsum(np.cumsum(obs, axis=1), axis=0).astype(np.float64)
        for b, le in enumerate(BUCKETS):
            out.append((Labels({"__name__": "h_bucket", "job": f"job-{h % 10}", "instance": f"i-{h}", "le": le}),
                        ts, cum[:, b]))
    return out


async def load_sotp(url: str, data: list[tuple[Labels, np.ndarray, np.ndarray]]) -> float:
    from sotp.storage import open_storage

    store = open_storage(url)
    await store.open()
    t0 = time.perf_counter()
    try:
        for start in range(0, len(data), 500):
            app = store.appender()
            for lb, ts, vs in data[start:start + 500]:
                app.append_series(lb, ts.tolist(), vs.tolist())
            await app.commit()
    finally:
        await store.close()
    return time.perf_counter() - t0


def load_prometheus(url: str, data: list[tuple[Labels, np.ndarray, np.ndarray]]) -> float:
    t0 = time.perf_counter()
    n = len(data[0][1])
    for start in range(0, n, 8):
        body = encode_write_request(
            (lb, list(zip(ts[start:start + 8].tolist(), vs[start:start + 8].tolist(), strict=True)))
            for lb, ts, vs in data
        )
        req = urllib.request.Request(f"{url}/api/v1/write", data=body, method="POST", headers={
            "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0"})
        with urllib.request.urlopen(req, timeout=120) as r:
            assert r.status in (200, 204)
    return time.perf_counter() - t0


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed_query(base: str, q: str, start: float, end: float, step: int) -> tuple[float, int]:
    params = urllib.parse.urlencode({"query": q, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)})
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{params}", timeout=300) as r:
        body = json.load(r)
    took = time.perf_counter() - t0
    if body.get("status") != "success":
        raise SystemExit(f"{base}: {q}: {body}")
    return took, len(body["data"]["result"])


async def breakdown(url: str, start_ms: int, end_ms: int) -> dict[tuple[str, int], tuple[float, float]]:
    """In-process split of SOTP's time per query: storage fetch vs evaluation (medians of 3)."""
    from query.engine import Engine, Evaluator
    from query.parse import parse
    from sotp.storage import open_storage

    store = open_storage(url)
    await store.open()
    out = {}
    try:
        engine = Engine(store)
        for q in QUERIES:
            for step in (15, 60):
                fetch, evals = [], []
                for _ in range(3):
                    steps = np.arange(start_ms, end_ms + 1, step * 1000, dtype=np.int64)
                    ev = Evaluator(engine, start_ms, end_ms, time.monotonic() + 300)
                    expr = parse(q)
                    t0 = time.perf_counter()
                    ev.plan(expr, steps)
                    await ev.fetch([])
                    t1 = time.perf_counter()
                    ev.evaluate(expr, steps)
                    fetch.append(t1 - t0)
                    evals.append(time.perf_counter() - t1)
                out[(q, step)] = (statistics.median(fetch) * 1000, statistics.median(evals) * 1000)
    finally:
        await store.close()
    return out


def serve(storage_url: str, port: int) -> None:
    """``--serve``: the query API alone on ``port`` (no receivers), as ``sotp serve`` would run it."""
    from aiohttp import web

    from query.api import setup
    from sotp.config import Config
    from sotp.storage import open_storage
    from sotp.web import CTX, ServerContext

    config = Config()
    ctx = ServerContext(config=config, storage=open_storage(storage_url))
    app = web.Application()
    app[CTX] = ctx
    setup(app, ctx)

    async def storage_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        await ctx.storage.open()
        yield
        await ctx.storage.close()

    app.cleanup_ctx.append(storage_ctx)
    app.router.add_get("/-/ready", lambda r: web.Response(text="ok"))  # type: ignore[arg-type,return-value]
    web.run_app(app, host="127.0.0.1", port=port, print=None)


async def drop_schema(url: str) -> None:
    import psycopg

    dsn, _, schema = url.partition("?schema=")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage", help="SOTP storage URL (default: a fresh schema in SOTP_TEST_PG_DSN)")
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--serve", nargs=2, metavar=("STORAGE", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    pg_schema = None
    url = args.storage
    if url is None:
        dsn = os.environ.get("SOTP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
        pg_schema = f"sotp_bench_{uuid.uuid4().hex[:8]}"
        url = f"{dsn}?schema={pg_schema}"
    prom_bin = shutil.which("prometheus") or "/usr/bin/prometheus"
    end_ms = (int(time.time() * 1000) // 60_000) * 60_000
    data = dataset(args.series, end_ms)
    print(f"dataset: {len(data)} series x {len(data[0][1])} samples = {sum(len(d[1]) for d in data):,} samples")
    tmp = Path(tempfile.mkdtemp(prefix="sotp-bench-query-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        took = asyncio.run(load_sotp(url, data))
        print(f"SOTP load ({url.split('@')[-1]}): {took:.1f}s")
        pport, sport = free_port(), free_port()
        (tmp / "prometheus.yml").write_text("global:\n  evaluation_interval: 1m\n")
        log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen([prom_bin, f"--config.file={tmp / 'prometheus.yml'}",
                                       f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{pport}",
                                       "--web.enable-remote-write-receiver"], stdout=log, stderr=log, cwd=tmp))
        prom = f"http://127.0.0.1:{pport}"
        wait_http(f"{prom}/-/ready", procs[-1])
        print(f"Prometheus load (remote write): {load_prometheus(prom, data):.1f}s")
        slog = open(tmp / "sotp.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, __file__, "--serve", url, str(sport)], stdout=slog,
                                      stderr=slog, cwd=REPO))
        sotp = f"http://127.0.0.1:{sport}"
        wait_http(f"{sotp}/-/ready", procs[-1])
        end = end_ms / 1000
        start = end - 3600
        split = asyncio.run(breakdown(url, end_ms - 3600_000, end_ms))
        print(f"\n{'query':60} {'step':>4} {'series':>6} {'SOTP ms':>8} {'Prom ms':>8} {'ratio':>6}"
              f" | SOTP in-process: {'fetch':>6} {'eval':>6}")
        ratios = []
        for q in QUERIES:
            for step in (15, 60):
                res = {}
                for name, base in (("sotp", sotp), ("prom", prom)):
                    timed_query(base, q, start, end, step)  # warm-up (caches, connection)
                    runs = [timed_query(base, q, start, end, step) for _ in range(args.repeat)]
                    res[name] = (statistics.median(t for t, _ in runs) * 1000, runs[0][1])
                ratio = res["sotp"][0] / res["prom"][0]
                ratios.append(ratio)
                flag = "" if ratio <= 3 else "  > 3x"
                f_ms, e_ms = split[(q, step)]
                print(f"{q:60} {step:>3}s {res['sotp'][1]:>6} {res['sotp'][0]:>8.1f} {res['prom'][0]:>8.1f} "
                      f"{ratio:>5.2f}x |                  {f_ms:>6.0f} {e_ms:>6.0f}{flag}")
        print(f"\nworst ratio {max(ratios):.2f}x, median ratio {statistics.median(ratios):.2f}x (target <= 3x)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
        if pg_schema:
            asyncio.run(drop_schema(url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
