"""Push throughput: ``sotp serve``'s push gateway beside Debian's Pushgateway 1.5.1, same pushes, same run.

Each push is a PUT of ``--samples`` gauge samples in text format 0.0.4 (what ``push_to_gateway`` sends) to
one of ``--groups`` groups (``/metrics/job/bench/instance/<n>``), round-robin, with ``--concurrency``
pushes in flight. The groups are created before the clock starts. Pushgateway keeps the groups in memory
(its persistence file is written every 5 minutes); SOTP answers each push only after the samples are
committed to its storage (SQLite by default, as ``sotp up`` uses).

    .venv/bin/python bench/pushgateway.py                   # groups 1, 100, 1000
    .venv/bin/python bench/pushgateway.py --groups 100 --pushes 2000

Prints pushes/s for both and the ratio SOTP / Pushgateway.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def body(samples: int, round_: int) -> bytes:
    lines = ["# TYPE bench_value gauge"]
    lines += [f'bench_value{{k="{i}"}} {round_ + i * 0.5}' for i in range(samples)]
    return ("\n".join(lines) + "\n").encode()


async def run_pushes(base: str, groups: int, pushes: int, samples: int, concurrency: int) -> float:
    """Create the groups, then time ``pushes`` PUTs; returns pushes per second."""
    async with aiohttp.ClientSession() as session:

        async def put(n: int, round_: int) -> None:
            async with session.put(f"{base}/metrics/job/bench/instance/i{n % groups}", data=body(samples, round_)) as r:
                if r.status != 200:
                    raise SystemExit(f"{base}: push answered {r.status}: {await r.text()}")

        for n in range(groups):
            await put(n, 0)
        queue = iter(range(pushes))

        async def worker() -> None:
            for n in queue:
                await put(n, n + 1)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return pushes / (time.perf_counter() - started)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", type=int, action="append", help="group counts to run (default 1, 100, 1000)")
    ap.add_argument("--pushes", type=int, default=3000)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--storage", default=None, help="sotp storage URL (default: SQLite in a temp dir)")
    args = ap.parse_args()
    pgw = shutil.which("prometheus-pushgateway")
    if pgw is None:
        raise SystemExit("prometheus-pushgateway not found: apt-get install prometheus-pushgateway")
    results = []
    for groups in args.groups or [1, 100, 1000]:
        with tempfile.TemporaryDirectory() as tmp:
            pg_port, sotp_port = _free_port(), _free_port()
            storage = args.storage or f"sqlite:///{tmp}/sotp.db"
            procs = [
                subprocess.Popen([pgw, f"--web.listen-address=127.0.0.1:{pg_port}",
                                  f"--persistence.file={tmp}/pgw"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL),
                subprocess.Popen([sys.executable, "-m", "sotp", "--log-level", "error", "serve", "--listen",
                                  f"127.0.0.1:{sotp_port}", "--storage", storage], cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            ]
            try:
                _wait(pg_port)
                _wait(sotp_port)
                pushes = max(args.pushes, groups)
                ref = asyncio.run(run_pushes(f"http://127.0.0.1:{pg_port}", groups, pushes, args.samples,
                                             args.concurrency))
                ours = asyncio.run(run_pushes(f"http://127.0.0.1:{sotp_port}", groups, pushes, args.samples,
                                              args.concurrency))
            finally:
                for p in procs:
                    p.terminate()
                    p.wait(10)
        results.append((groups, ours, ref))
        print(f"groups={groups:5d}  sotp {ours:8.0f} pushes/s  pushgateway {ref:8.0f} pushes/s  "
              f"ratio {ours / ref:5.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
