"""Scrape benchmark: `sotp worker` beside Prometheus 2.42 (agent mode, remote-writing to a sink).

Two parts, both printing SOTP's figure, the reference's and the ratio:

1. ``parser``: one big exposition (node_exporter-like, ``--parser-lines`` sample lines) parsed by
   sotp.codec.textparse (cold: every series new, and warm: the scraper's cache by raw series text) and by
   prometheus_client's ``text_string_to_metric_families``; both must yield the same samples.
2. ``scrape``: ``--targets`` targets (multi-target pattern: ``/metrics?target=host-N`` on one stub process)
   with ``--series`` series each at ``--interval``; `sotp worker` (SQLite storage) and Prometheus
   (``--enable-feature=agent``, remote write to a 204 sink in the stub process) scrape the same targets at
   the same time. After a warm-up of two intervals plus a margin, each process's samples appended and
   CPU seconds (/proc/<pid>/stat) are measured over ``--duration`` seconds.

Usage: ``.venv/bin/python bench/scrape.py [--part parser|scrape|all] [--targets 1000] [--series 200]
[--interval 15] [--duration 45] [--storage memory://]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- exposition generator -------------------------------------------------------------------------

def exposition(n_series: int, seed: int = 1, tick: int = 0) -> str:
    """A node_exporter-like page: counters with cpu/mode, filesystem gauges with long labels, a histogram."""
    rnd = random.Random(seed)
    out: list[str] = []
    left = n_series
    out.append("# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n")
    out.append("# TYPE node_cpu_seconds_total counter\n")
    modes = ["idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"]
    cpu = 0
    while left > n_series // 2:
        for m in modes:
            out.append(f'node_cpu_seconds_total{{cpu="{cpu}",mode="{m}"}} {rnd.random() * 1e6 + tick:.2f}\n')
            left -= 1
        cpu += 1
    out.append("# TYPE node_filesystem_avail_bytes gauge\n")
    i = 0
    while left > 20:
        out.append(
            f'node_filesystem_avail_bytes{{device="/dev/mapper/vg0-lv{i}",fstype="ext4",'
            f'mountpoint="/srv/data/volume {i}"}} {rnd.randrange(1 << 40) + tick}\n'
        )
        left -= 1
        i += 1
    out.append("# TYPE http_request_duration_seconds histogram\n")
    acc = 0
    for le in ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"):
        if left <= 2:
            break
        acc += rnd.randrange(100) + tick
        out.append(f'http_request_duration_seconds_bucket{{handler="/api",le="{le}"}} {acc}\n')
        left -= 1
    out.append(f'http_request_duration_seconds_sum{{handler="/api"}} {acc * 0.1:.3f}\n')
    out.append(f'http_request_duration_seconds_count{{handler="/api"}} {acc}\n')
    return "".join(out)


# -- part 1: parser -------------------------------------------------------------------------------

def bench_parser(lines: int) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from sotp.codec.textparse import iter_samples, parse, parse_series

    text = exposition(lines)
    n = sum(1 for ln in text.splitlines() if ln and not ln.startswith("#"))

    def best(fn, rounds: int = 3) -> float:  # type: ignore[no-untyped-def]
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    def ours_cold() -> None:
        parse(text)

    cache: dict[str, object] = {}

    def ours_warm() -> None:
        for series, _v, _t in iter_samples(text):
            if series not in cache:
                cache[series] = parse_series(series)

    def theirs() -> None:
        for fam in text_string_to_metric_families(text):
            for _ in fam.samples:
                pass

    # Same samples from both parsers (names, labels, values).
    a = sorted((s.name, tuple(sorted(s.labels)), s.value) for s in parse(text).samples)
    b = sorted((s.name, tuple(sorted(s.labels.items())), s.value)
               for fam in text_string_to_metric_families(text) for s in fam.samples)
    assert a == b, "parsers disagree"
    ours_warm()
    t_cold, t_warm, t_ref = best(ours_cold), best(ours_warm), best(theirs, 2)
    print(f"parser: {n} sample lines, {len(text) / 1e6:.1f} MB")
    print(f"  sotp textparse (all labels parsed) {n / t_cold / 1e3:8.0f} k lines/s   ratio {t_ref / t_cold:5.1f}x")
    print(f"  sotp textparse (scrape cache warm) {n / t_warm / 1e3:8.0f} k lines/s   ratio {t_ref / t_warm:5.1f}x")
    print(f"  prometheus_client parser           {n / t_ref / 1e3:8.0f} k lines/s")


# -- part 2: scrape ---------------------------------------------------------------------------------

STUB = r'''
import asyncio, sys
from aiohttp import web
sys.path.insert(0, sys.argv[4])
from bench.scrape import exposition
port, sink_port, series = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
pages = [exposition(series, seed=1, tick=t).encode() for t in range(4)]
hits = {}
async def metrics(request):
    target = request.query.get("target", "")
    n = hits[target] = hits.get(target, -1) + 1
    return web.Response(body=pages[n % 4], headers={"Content-Type": "text/plain; version=0.0.4"})
async def sink(request):
    await request.read()
    return web.Response(status=204)
async def main():
    a = web.Application(); a.router.add_get("/metrics", metrics)
    s = web.Application(client_max_size=64 << 20); s.router.add_post("/write", sink)
    for app, p in ((a, port), (s, sink_port)):
        r = web.AppRunner(app, access_log=None); await r.setup()
        await web.TCPSite(r, "127.0.0.1", p, backlog=4096).start()
    await asyncio.Event().wait()
asyncio.run(main())
'''


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing on port {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def metric_sum(port: int, name: str, labels: str = "") -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {") and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def bench_scrape(targets: int, series: int, interval: int, duration: int, storage: str) -> None:
    prom_bin = shutil.which("prometheus") or "/usr/bin/prometheus"
    tmp = Path(tempfile.mkdtemp(prefix="sotp-bench-scrape-"))
    stub_port, sink_port, worker_port, prom_port = free_port(), free_port(), free_port(), free_port()
    job = {
        "job_name": "bench",
        "static_configs": [{"targets": [f"host-{i:04d}" for i in range(targets)]}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": f"127.0.0.1:{stub_port}"},
        ],
    }
    glob = {"scrape_interval": f"{interval}s", "scrape_timeout": f"{min(interval, 10)}s"}
    import yaml

    (tmp / "sotp.yml").write_text(yaml.safe_dump({"global": glob, "scrape_configs": [job]}))
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({
        "global": glob, "scrape_configs": [job],
        "remote_write": [{"url": f"http://127.0.0.1:{sink_port}/write"}],
    }))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs: list[subprocess.Popen[bytes]] = []
    logs = contextlib.ExitStack()

    def log(name: str) -> IO[bytes]:
        return logs.enter_context(open(tmp / f"{name}.log", "wb"))

    try:
        stub = subprocess.Popen([sys.executable, "-c", STUB, str(stub_port), str(sink_port), str(series), str(REPO)],
                                env=env, stdout=subprocess.DEVNULL, stderr=log("stub"))
        procs.append(stub)
        wait_port(stub_port)
        worker = subprocess.Popen(
            [sys.executable, "-m", "sotp", "--log-level", "warning", "worker", "--config", str(tmp / "sotp.yml"),
             "--storage", storage or f"sqlite:///{tmp / 'sotp.db'}", "--listen", f"127.0.0.1:{worker_port}"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log("worker"))
        procs.append(worker)
        prom = subprocess.Popen(
            [prom_bin, "--enable-feature=agent", f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.agent.path={tmp / 'prom-agent'}", f"--web.listen-address=127.0.0.1:{prom_port}",
             "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=log("prometheus"))
        procs.append(prom)
        wait_port(worker_port)
        wait_port(prom_port)
        warm = 2 * interval + 8  # the first round creates every series (slow on SQLite): measure after it
        print(f"scrape: {targets} targets x {series} series every {interval}s; warming up {warm}s, "
              f"measuring {duration}s (stub + sink in a third process; 2 cores shared)")
        time.sleep(warm)

        def sample() -> tuple[float, float, float, float, float, float, float]:
            # SOTP: kept samples + 5 report series per scrape; Prometheus agent: every appended sample.
            s_samples = metric_sum(worker_port, "sotp_worker_samples_scraped_total")
            s_scrapes = metric_sum(worker_port, "sotp_worker_scrapes_total")
            p_samples = metric_sum(prom_port, "prometheus_agent_samples_appended_total")
            p_scrapes = metric_sum(prom_port, "prometheus_target_interval_length_seconds_count")
            return (s_samples + 5 * s_scrapes, cpu_seconds(worker.pid), p_samples, cpu_seconds(prom.pid), time.time(),
                    s_scrapes, p_scrapes)

        s0, sc0, p0, pc0, t0, ss0, ps0 = sample()
        time.sleep(duration)
        s1, sc1, p1, pc1, t1, ss1, ps1 = sample()
        el = t1 - t0
        print(f"  scrapes in the window: expected ~{targets * el / interval:.0f}, sotp {ss1 - ss0:.0f}, "
              f"prometheus {ps1 - ps0:.0f}")
        ok_sotp = metric_sum(worker_port, "sotp_worker_scrapes_total", 'result="ok"')
        failed_sotp = metric_sum(worker_port, "sotp_worker_scrapes_total", 'result="failed"')
        rate_s, rate_p = (s1 - s0) / el, (p1 - p0) / el
        cpu_s = (sc1 - sc0) / max(1.0, (s1 - s0) / 1000)
        cpu_p = (pc1 - pc0) / max(1.0, (p1 - p0) / 1000)
        print(f"  expected                    {targets * (series + 5) / interval:10.0f} samples/s")
        store = (storage or "sqlite").split(":")[0]
        print(f"  sotp worker ({store:6s})      {rate_s:10.0f} samples/s  CPU {cpu_s * 1000:7.2f} ms/1k samples  "
              f"CPU {100 * (sc1 - sc0) / el:5.1f} %  RSS {rss_mb(worker.pid):6.1f} MB  "
              f"scrapes ok {ok_sotp:.0f} failed {failed_sotp:.0f}")
        print(f"  prometheus agent (+RW sink) {rate_p:10.0f} samples/s  CPU {cpu_p * 1000:7.2f} ms/1k samples  "
              f"CPU {100 * (pc1 - pc0) / el:5.1f} %  RSS {rss_mb(prom.pid):6.1f} MB")
        with urllib.request.urlopen(f"http://127.0.0.1:{worker_port}/-/targets", timeout=10) as r:
            errors: dict[str, int] = {}
            for t in json.load(r)["data"]["activeTargets"]:
                if t["lastError"]:
                    key = t["lastError"][:60]
                    errors[key] = errors.get(key, 0) + 1
        if errors:
            print(f"  sotp targets whose last scrape failed: {errors}")
        print(f"  ratio sotp/prometheus: throughput {rate_s / max(rate_p, 1):.2f}, "
              f"CPU per sample {cpu_s / max(cpu_p, 1e-9):.1f}x")
        print(json.dumps({"sotp_samples_per_s": round(rate_s), "prom_samples_per_s": round(rate_p),
                          "sotp_cpu_ms_per_1k": round(cpu_s * 1000, 3), "prom_cpu_ms_per_1k": round(cpu_p * 1000, 3)}))
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        logs.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["parser", "scrape", "all"], default="all")
    ap.add_argument("--parser-lines", type=int, default=50_000)
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--series", type=int, default=200)
    ap.add_argument("--interval", type=int, default=15)
    ap.add_argument("--duration", type=int, default=45)
    ap.add_argument("--storage", default="", help="the worker's --storage (default: SQLite in a temp dir); "
                    "memory:// isolates the scrape path from the store")
    a = ap.parse_args()
    if a.part in ("parser", "all"):
        bench_parser(a.parser_lines)
    if a.part in ("scrape", "all"):
        bench_scrape(a.targets, a.series, a.interval, a.duration, a.storage)


if __name__ == "__main__":
    main()
