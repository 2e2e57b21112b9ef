"""Remote-write ingest: ``sotp serve`` on PostgreSQL beside Prometheus's own receiver, same payloads, same run.

Load (issue 2): each of ``--concurrency`` senders owns ``--series`` series (as Prometheus's remote-write
shards do: a series always goes through one shard, so its samples arrive in order) and posts requests of
``--series`` series × ``--samples-per-request`` samples until every series holds ``--samples-per-series``
samples. Payloads are encoded and snappy-compressed before the clock starts. Every request must be
answered 204; SOTP answers 204 only after a durable commit (``synchronous_commit=on``), and the run checks
afterwards that PostgreSQL holds every sample sent.

    .venv/bin/python bench/ingest.py                       # full run (10,000 series × 2,000 samples × 2)
    .venv/bin/python bench/ingest.py --samples-per-series 200 --series 2000   # quick run

Prints samples/s for both and the ratio SOTP / Prometheus.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import aiohttp
import cramjam
import numpy as np

from sotp.codec.remote_write_encoder import field, varint

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DSN = os.environ.get("SOTP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def _label_bytes(shard: int, i: int) -> bytes:
    """Sorted labels of one series, padded so that every series' labels have the same length."""
    pairs = [
        ("__name__", f"bench_metric_{i % 100:03d}"),
        ("instance", f"host-{i:06d}"),
        ("job", "ingest-bench"),
        ("shard", f"s{shard:02d}"),
    ]
    return b"".join(field(0x0A, field(0x0A, n.encode()) + field(0x12, v.encode())) for n, v in pairs)


def encode_payloads(shard: int, series: int, per_request: int, requests: int, t0_ms: int) -> list[bytes]:
    """Snappy remote-write bodies for one sender, built with numpy (a sample is a fixed 18-byte field:
    ``0x12 0x10 | 0x09 <double> | 0x10 <6-byte varint>``: millisecond timestamps of this era take 6 bytes)."""
    labels = np.frombuffer(b"".join(_label_bytes(shard, i) for i in range(series)), dtype=np.uint8).reshape(series, -1)
    sample_len = 18
    body_len = labels.shape[1] + per_request * sample_len
    head = np.frombuffer(b"\x0a" + varint(body_len), dtype=np.uint8)
    idx = np.arange(series, dtype=np.float64)[:, None]
    out: list[bytes] = []
    for r in range(requests):
        ts = t0_ms + (r * per_request + np.arange(per_request, dtype=np.int64)) * 1000
        assert (ts >= 1 << 35).all() and (ts < 1 << 42).all(), "timestamps must take a 6-byte varint"
        var = np.zeros((per_request, 6), dtype=np.uint8)
        rest = ts.copy()
        for k in range(6):
            var[:, k] = (rest & 0x7F) | (0x80 if k < 5 else 0)
            rest >>= 7
        samples = np.zeros((series, per_request, sample_len), dtype=np.uint8)
        samples[:, :, 0] = 0x12
        samples[:, :, 1] = 16
        samples[:, :, 2] = 0x09
        values = idx * 1000.0 + (r * per_request + np.arange(per_request)) + 0.5  # never +0.0 (omitted)
        samples[:, :, 3:11] = values.astype("<f8").view(np.uint8).reshape(series, per_request, 8)
        samples[:, :, 11] = 0x10
        samples[:, :, 12:18] = var[None, :, :]
        rows = np.concatenate(
            [np.broadcast_to(head, (series, len(head))), labels, samples.reshape(series, -1)], axis=1
        )
        out.append(bytes(cramjam.snappy.compress_raw(rows.tobytes())))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


async def send_all(url: str, shards: list[list[bytes]], samples_per_request: int) -> tuple[float, int]:
    """Post every shard's payloads in order, shards concurrently; returns (seconds, samples)."""
    bad: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:

        async def sender(payloads: list[bytes]) -> int:
            sent = 0
            for body in payloads:
                async with session.post(url, data=body, headers=HEADERS) as resp:
                    if resp.status != 204:
                        bad.append(f"{resp.status} {(await resp.text())[:200]}")
                        return sent
                sent += 1
            return sent

        started = time.perf_counter()
        counts = await asyncio.gather(*(sender(p) for p in shards))
        elapsed = time.perf_counter() - started
    if bad:
        raise RuntimeError(f"{url}: {len(bad)} request(s) not answered 204, first: {bad[0]}")
    return elapsed, sum(counts)


def run_target(name: str, argv: list[str], ready: str, write: str, shards: list[list[bytes]], args: argparse.Namespace,
               log: Path, env: dict[str, str] | None = None, processes: int = 1) -> tuple[float, int]:
    """Start ``processes`` copies of ``argv`` (they share the port with SO_REUSEPORT), load them, stop them."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for k in range(processes):
            with open(log.with_suffix(f".{k}.log"), "wb") as fh:
                procs.append(subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=env))
            wait_ready(ready, procs[-1])
        cpu0, pg0, idle0 = sum(cpu_seconds(p.pid) for p in procs), postgres_cpu_seconds(), machine_idle_seconds()
        elapsed, requests = asyncio.run(send_all(write, shards, args.samples_per_request))
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
        pg = postgres_cpu_seconds() - pg0
        idle = machine_idle_seconds() - idle0
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    samples = requests * args.series * args.samples_per_request
    cores = (os.cpu_count() or 1) * elapsed
    print(f"{name:>12}: {samples:,} samples in {elapsed:.2f}s = {samples / elapsed:,.0f} samples/s "
          f"(server CPU {cpu:.1f}s, PostgreSQL CPU {pg:.1f}s, machine idle {idle:.1f} of {cores:.1f} core-s)",
          flush=True)
    return elapsed, samples


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU time of every process named postgres (the server is shared: other work shows up here too)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" in text:
            total += cpu_seconds(int(stat.parent.name))
    return total


def machine_idle_seconds() -> float:
    """Idle core-seconds of the whole machine (how much of its cores nobody used)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[4]) / os.sysconf("SC_CLK_TCK")


def pg_count(dsn: str, schema: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(f'SELECT coalesce(sum(cardinality(ts)), 0) FROM "{schema}".sotp_samples').fetchone()
        return int(row[0]) if row else 0


def pg_drop(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", type=int, default=10_000, help="series per sender (and per request)")
    p.add_argument("--samples-per-request", type=int, default=10, help="samples per series in one request")
    p.add_argument("--samples-per-series", type=int, default=2_000, help="samples each series ends with")
    p.add_argument("--concurrency", type=int, default=2, help="concurrent senders (shards)")
    p.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL for sotp serve (a fresh schema is used)")
    p.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    p.add_argument("--sotp-processes", type=int, default=1,
                   help="sotp serve processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--gc-threshold", type=int, default=0,
                   help="experiment: run sotp serve with gc.set_threshold(N, 20, 100)")
    p.add_argument("--skip-prometheus", action="store_true")
    p.add_argument("--skip-sotp", action="store_true")
    p.add_argument("--keep-schema", action="store_true", help="do not drop the bench schema afterwards")
    args = p.parse_args()

    requests = args.samples_per_series // args.samples_per_request
    t0 = int(time.time() * 1000) - requests * args.samples_per_request * 1000 - 60_000
    print(f"encoding {args.concurrency} × {requests} requests of {args.series:,} series × "
          f"{args.samples_per_request} samples ...", flush=True)
    started = time.perf_counter()
    shards = [encode_payloads(c, args.series, args.samples_per_request, requests, t0) for c in range(args.concurrency)]
    size = sum(len(b) for s in shards for b in s)
    print(f"encoded {size / 1e6:.0f} MB in {time.perf_counter() - started:.1f}s", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="sotp-bench-"))
    results: dict[str, float] = {}

    if not args.skip_sotp:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        sep = "&" if "?" in args.dsn else "?"
        port = free_port()
        serve = ["serve", "--listen", f"127.0.0.1:{port}", "--storage", f"{args.dsn}{sep}schema={schema}"]
        if args.sotp_processes > 1:
            serve.append("--reuse-port")  # the processes share the port on purpose
        argv = [sys.executable, "-m", "sotp", *serve]
        if args.gc_threshold:
            # Experiment: the same server with CPython's cyclic GC run less often (see docs/storage.md).
            code = (f"import gc, sys; gc.set_threshold({args.gc_threshold}, 20, 100); from sotp.cli import main; "
                    f"sys.exit(main({serve!r}))")
            argv = [sys.executable, "-c", code]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        name = "sotp" if args.sotp_processes == 1 else f"sotp ×{args.sotp_processes}"
        try:
            elapsed, samples = run_target(name, argv, f"http://127.0.0.1:{port}/-/ready",
                                          f"http://127.0.0.1:{port}/api/v1/write", shards, args, tmp / "sotp.log",
                                          env, processes=args.sotp_processes)
            stored = pg_count(args.dsn, schema)
            print(f"{'':>12}  PostgreSQL holds {stored:,} samples of {samples:,} acknowledged", flush=True)
            if stored != samples:
                print("ERROR: acknowledged samples missing from PostgreSQL", file=sys.stderr)
                return 1
            results["sotp"] = samples / elapsed
        finally:
            if not args.keep_schema:
                pg_drop(args.dsn, schema)

    if not args.skip_prometheus:
        port = free_port()
        cfg = tmp / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 1h\n")
        argv = [args.prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver"]
        elapsed, samples = run_target("prometheus", argv, f"http://127.0.0.1:{port}/-/ready",
                                      f"http://127.0.0.1:{port}/api/v1/write", shards, args, tmp / "prometheus.log")
        results["prometheus"] = samples / elapsed

    if len(results) == 2:
        print(f"{'ratio':>12}: {results['sotp'] / results['prometheus']:.2f} × Prometheus (target >= 0.5)")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
