"""Footprint of the SOTP agent and host exporter beside Debian's node_exporter, measured in one run.

For each process: resident memory (VmRSS, after warm-up) and CPU time per collection (user + system from
/proc/<pid>/stat, divided by the number of collections). The exporters are scraped over HTTP N times;
the agent collects every 100 ms and pushes to a local sink that answers 204, and one POST = one collection.
Both run their default collectors (SOTP's: every node_exporter default it implements).

Then the retry timing the tests leave out (wall-clock gaps depend on the machine's load): the agent against
a sink answering 503 twice, with a 50 ms minimum backoff, prints the measured gaps beside the windows the
backoff allows (jitter takes each wait to between half and all of 50 ms, then 100 ms).

    .venv/bin/python bench/agent.py [--scrapes 200] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_exporter(argv: list[str], port: int, scrapes: int) -> tuple[float, float, int]:
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}/metrics"
        size = 0
        for _ in range(5):  # warm-up
            size = len(urllib.request.urlopen(url, timeout=10).read())
        c0 = cpu_seconds(p.pid)
        for _ in range(scrapes):
            urllib.request.urlopen(url, timeout=10).read()
        c1 = cpu_seconds(p.pid)
        return rss_mib(p.pid), (c1 - c0) / scrapes * 1000, size
    finally:
        p.terminate()
        p.wait(10)


class Sink:
    def __init__(self, statuses: list[int] | None = None) -> None:
        self.posts = 0
        self.bytes = 0
        self.times: list[float] = []
        self.statuses = list(statuses or [])
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers["Content-Length"])
                self.rfile.read(n)
                outer.times.append(time.monotonic())
                outer.posts += 1
                outer.bytes += n
                self.send_response(outer.statuses.pop(0) if outer.statuses else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def bench_agent(seconds: float) -> tuple[float, float, int, float]:
    sink = Sink()
    with tempfile.TemporaryDirectory() as tmp:
        p = subprocess.Popen(
            [sys.executable, "-m", "sotp", "agent", "--url", f"http://127.0.0.1:{sink.port}/api/v1/write",
             "--interval", "100ms", "--buffer-dir", f"{tmp}/buf"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
        )
        try:
            while sink.posts < 10:  # warm-up
                time.sleep(0.05)
            c0, n0, b0 = cpu_seconds(p.pid), sink.posts, sink.bytes
            time.sleep(seconds)
            c1, n1, b1 = cpu_seconds(p.pid), sink.posts, sink.bytes
            return rss_mib(p.pid), (c1 - c0) / (n1 - n0) * 1000, n1 - n0, (b1 - b0) / (n1 - n0)
        finally:
            p.terminate()
            p.wait(10)
            sink.server.shutdown()


def bench_backoff() -> list[float]:
    """Gaps between the attempts of one batch answered 503, 503, 204 (min backoff 50 ms, cap 200 ms)."""
    sys.path.insert(0, str(REPO))
    import logging

    logging.getLogger("agent").setLevel(logging.ERROR)  # the outage warning is expected here
    from agent.buffer import Buffer
    from agent.loop import Agent, Settings
    from agent.sender import Sender
    from sotp.codec.exposition import MetricFamily

    def collect() -> list[MetricFamily]:
        fam = MetricFamily("bench_counter", "counter", "one")
        fam.add({}, 1.0)
        return [fam]

    sink = Sink([503, 503])
    with tempfile.TemporaryDirectory() as tmp:
        agent = Agent(Settings(interval=60, target={"job": "bench"}, min_backoff=0.05, max_backoff=0.2), collect,
                      Sender(f"http://127.0.0.1:{sink.port}/api/v1/write", None, 5), Buffer(Path(tmp), 1 << 20))
        agent.collect_once()
        deadline = time.monotonic() + 30
        while len(agent.buffer) and time.monotonic() < deadline:
            agent.drain(deadline)
            time.sleep(0.001)
    sink.server.shutdown()
    return [b - a for a, b in zip(sink.times, sink.times[1:], strict=False)][:2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scrapes", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    ne_bin = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"
    if not os.access(ne_bin, os.X_OK):
        raise SystemExit("prometheus-node-exporter not installed (apt-get install prometheus-node-exporter)")

    ne_port, host_port = free_port(), free_port()
    ne_rss, ne_cpu, ne_size = bench_exporter([ne_bin, f"--web.listen-address=127.0.0.1:{ne_port}"], ne_port,
                                             args.scrapes)
    ho_rss, ho_cpu, ho_size = bench_exporter(
        [sys.executable, "-m", "sotp", "exporter", "host", "--listen", f"127.0.0.1:{host_port}"], host_port,
        args.scrapes)
    ag_rss, ag_cpu, ag_n, ag_body = bench_agent(args.seconds)

    print(f"{'process':<34} {'RSS MiB':>8} {'CPU ms/collection':>18} {'x node_exporter':>16}")
    print(f"{'node_exporter 1.5 (all collectors)':<34} {ne_rss:>8.1f} {ne_cpu:>18.2f} {'1.00 / 1.00':>16}")
    print(f"{'sotp exporter host':<34} {ho_rss:>8.1f} {ho_cpu:>18.2f} "
          f"{f'{ho_rss / ne_rss:.2f} / {ho_cpu / ne_cpu:.2f}':>16}")
    print(f"{'sotp agent (collect+encode+push)':<34} {ag_rss:>8.1f} {ag_cpu:>18.2f} "
          f"{f'{ag_rss / ne_rss:.2f} / {ag_cpu / ne_cpu:.2f}':>16}")
    print(f"(ratios are RSS / CPU; node_exporter /metrics {ne_size} B, sotp host /metrics {ho_size} B; "
          f"agent: {ag_n} collections, {ag_body:.0f} B per remote-write body; "
          f"{args.scrapes} scrapes per exporter)")
    print(f"agent RSS within node_exporter's: {'yes' if ag_rss <= ne_rss else 'NO'} "
          f"({ag_rss:.1f} MiB vs {ne_rss:.1f} MiB)")
    gaps = bench_backoff()
    windows = ["25-50", "50-100"]
    print("retry gaps after 503: " + ", ".join(f"{g * 1000:.0f} ms (backoff window {w} ms)"
                                                for g, w in zip(gaps, windows, strict=False)))


if __name__ == "__main__":
    main()
