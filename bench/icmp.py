"""ICMP: 1,024 loopback targets, 3 echoes each, through SOTP's exporter and Debian's blackbox_exporter.

Both are driven over HTTP by the same client (``--concurrency`` requests in flight):

- SOTP: one ``/probe?module=icmp3`` per target (``count: 3``, ``interval: 10ms``): 1,024 requests;
- blackbox_exporter: one echo per probe (it has no count), so three ``/probe`` per target: 3,072 requests.

hosts/s = targets / wall time. Every loopback address answers, so every echo without a reply is a false
loss. For reference it also times SOTP's pinger in-process (what continuous mode uses, no HTTP) and
icmplib's own ``async_multiping`` (one socket per host). Then continuous mode: the same targets pinged
every second by ``sotp exporter icmp`` and by Debian's smokeping_prober (if installed), with echoes/s,
lost echoes and CPU over a window.

    .venv/bin/python bench/icmp.py                 # as root in this namespace (raw sockets here)
    .venv/bin/python bench/icmp.py --datagram      # in a fresh namespace allowing datagram sockets
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import icmplib
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from exporters.icmp.pinger import Pinger  # noqa: E402

BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
SMOKEPING = "/usr/bin/prometheus-smokeping-prober"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, fatal: bool = True) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return True
        except OSError:
            time.sleep(0.1)
    if fatal:
        raise SystemExit(f"bench: {url} did not answer within {timeout}s")
    return False


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


async def drive(urls: list[str], concurrency: int) -> tuple[float, list[str]]:
    """GET every URL with ``concurrency`` in flight; (seconds, bodies)."""
    sem = asyncio.Semaphore(concurrency)
    conn = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:

        async def one(url: str) -> str:
            async with sem, session.get(url, headers={"X-Prometheus-Scrape-Timeout-Seconds": "5.5"}) as r:
                return await r.text()

        await one(urls[0])  # warm up the connection pool and the exporter's sockets
        start = time.perf_counter()
        bodies = await asyncio.gather(*(one(u) for u in urls))
        return time.perf_counter() - start, list(bodies)


def bench_sotp(targets: list[str], count: int, concurrency: int, tmp: Path) -> tuple[float, int]:
    port = free_port()
    cfg = tmp / "icmp.yml"
    cfg.write_text(yaml.safe_dump({
        "modules": {"icmp3": {"timeout": "5s", "icmp": {"preferred_ip_protocol": "ip4", "count": count,
                                                         "interval": "10ms"}}},
    }))
    log = open(tmp / "sotp.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "sotp", "exporter", "icmp", "--config", str(cfg),
                             "--listen", f"127.0.0.1:{port}"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_http(f"http://127.0.0.1:{port}/-/healthy")
        urls = [f"http://127.0.0.1:{port}/probe?module=icmp3&target={t}" for t in targets]
        secs, bodies = asyncio.run(drive(urls, concurrency))
        lost = sum(count - int(sample(b, "sotp_probe_icmp_replies")) for b in bodies)
        return len(targets) / secs, lost
    finally:
        proc.terminate()
        proc.wait(10)


def bench_blackbox(targets: list[str], count: int, concurrency: int, tmp: Path) -> tuple[float, int]:
    port = free_port()
    cfg = tmp / "blackbox.yml"
    cfg.write_text(yaml.safe_dump({"modules": {"icmp": {"prober": "icmp", "timeout": "5s",
                                                        "icmp": {"preferred_ip_protocol": "ip4"}}}}))
    log = open(tmp / "blackbox.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([BLACKBOX, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/-/healthy")
        urls = [f"http://127.0.0.1:{port}/probe?module=icmp&target={t}" for _ in range(count) for t in targets]
        secs, bodies = asyncio.run(drive(urls, concurrency))
        lost = sum(1 for b in bodies if sample(b, "probe_success") != 1)
        return len(targets) / secs, lost
    finally:
        proc.terminate()
        proc.wait(10)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def counter_sum(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def measure_continuous(proc: subprocess.Popen[bytes], url: str, req_name: str, resp_name: str,
                       warmup: float, seconds: float) -> tuple[float, str, float]:
    """(echoes/s and CPU % of one core over ``seconds`` after ``warmup``; "lost/sent" since the start at the
    window's end: cumulative, so it does not depend on two scrapes of a slow exporter lining up)."""
    time.sleep(warmup)
    t0, c0 = time.monotonic(), cpu_seconds(proc.pid)
    a = urllib.request.urlopen(url, timeout=30).read().decode()
    time.sleep(seconds)
    b = urllib.request.urlopen(url, timeout=30).read().decode()
    t1, c1 = time.monotonic(), cpu_seconds(proc.pid)
    sent, got = counter_sum(b, req_name), counter_sum(b, resp_name)
    return (sent - counter_sum(a, req_name)) / (t1 - t0), f"{sent - got:.0f}/{sent:.0f}", 100 * (c1 - c0) / (t1 - t0)


def bench_continuous(targets: list[str], seconds: float, datagram: bool, tmp: Path) -> list[tuple[str, ...]]:
    rows = []
    port = free_port()
    cfg = tmp / "continuous.yml"
    cfg.write_text(yaml.safe_dump({"continuous": {"targets": targets, "interval": "1s", "timeout": "1s"}}))
    log = open(tmp / "sotp-continuous.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "sotp", "exporter", "icmp", "--config", str(cfg),
                             "--listen", f"127.0.0.1:{port}"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_http(f"http://127.0.0.1:{port}/-/healthy")
        rate, lost, cpu = measure_continuous(proc, f"http://127.0.0.1:{port}/metrics", "sotp_icmp_requests_total",
                                             "sotp_icmp_responses_total", 3.0, seconds)
        rows.append(("SOTP continuous", f"{rate:.0f}", lost, f"{cpu:.0f}"))
    finally:
        proc.terminate()
        proc.wait(10)
    if not os.access(SMOKEPING, os.X_OK):
        rows.append(("smokeping_prober", "not installed", "", ""))
        return rows
    port = free_port()
    log = open(tmp / "smokeping.log", "wb")  # noqa: SIM115
    flags = [] if datagram else ["--privileged"]
    sp_cfg = tmp / "smokeping.yml"
    sp_cfg.write_text("targets: []\n")  # the hosts are given as arguments
    proc = subprocess.Popen([SMOKEPING, f"--web.listen-address=127.0.0.1:{port}", f"--config.file={sp_cfg}",
                             *flags, *targets], stdout=log, stderr=subprocess.STDOUT)
    try:
        start, c0 = time.monotonic(), cpu_seconds(proc.pid)
        if not wait_http(f"http://127.0.0.1:{port}/metrics", timeout=60, fatal=False):
            cpu = 100 * (cpu_seconds(proc.pid) - c0) / (time.monotonic() - start)
            rows.append(("smokeping_prober 0.6.1", "no /metrics within 60 s", "", f"{cpu:.0f}"))
            return rows
        # smokeping counts a request when sent and its reply in the histogram's _count.
        rate, lost, cpu = measure_continuous(proc, f"http://127.0.0.1:{port}/metrics", "smokeping_requests_total",
                                             "smokeping_response_duration_seconds_count", 3.0, seconds)
        rows.append(("smokeping_prober 0.6.1", f"{rate:.0f}", lost, f"{cpu:.0f}"))
    finally:
        proc.terminate()
        proc.wait(10)
    return rows


def bench_pinger(targets: list[str], count: int) -> tuple[float, int, str]:
    async def run() -> tuple[float, int, str]:
        pinger = Pinger(max_in_flight=1024)
        await pinger.ping("127.0.0.1", timeout=1.0)

        async def host(ip: str) -> int:
            return sum([await pinger.ping(ip, timeout=2.0) is not None for _ in range(count)])

        start = time.perf_counter()
        got = await asyncio.gather(*(host(t) for t in targets))
        secs = time.perf_counter() - start
        mode = ",".join(sorted(set(pinger.modes().values())))
        pinger.close()
        return len(targets) / secs, count * len(targets) - sum(got), mode

    return asyncio.run(run())


def bench_icmplib(targets: list[str], count: int, privileged: bool) -> tuple[float, int]:
    start = time.perf_counter()
    hosts = asyncio.run(icmplib.async_multiping(targets, count=count, interval=0.01, timeout=2,
                                                concurrent_tasks=1024, privileged=privileged))
    secs = time.perf_counter() - start
    return len(targets) / secs, sum(h.packets_sent - h.packets_received for h in hosts)


def in_datagram_namespace(argv: list[str]) -> int:
    """Re-run this script inside a fresh namespace whose ping_group_range admits gid 0."""
    name = f"sotp-icmp-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        set_range = ["sh", "-c", "echo 0 0 > /proc/sys/net/ipv4/ping_group_range"]  # this namespace's copy
        for cmd in (["ip", "link", "set", "lo", "up"], set_range):
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True)
        cmd = ["ip", "netns", "exec", name, sys.executable, __file__, *argv, "--in-namespace"]
        return subprocess.run(cmd).returncode
    finally:
        subprocess.run(["ip", "netns", "del", name])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=1024)
    ap.add_argument("--count", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=128, help="HTTP requests in flight")
    ap.add_argument("--datagram", action="store_true", help="run in a namespace allowing datagram sockets")
    ap.add_argument("--continuous-seconds", type=float, default=10.0,
                    help="measuring window of the continuous comparison (0: skip it)")
    ap.add_argument("--in-namespace", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.datagram and not args.in_namespace:
        return in_datagram_namespace([a for a in sys.argv[1:] if a != "--datagram"] + ["--datagram"])
    if not os.access(BLACKBOX, os.X_OK):
        raise SystemExit(f"bench: {BLACKBOX} not found: apt-get install prometheus-blackbox-exporter")
    targets = [f"127.10.{i // 250}.{i % 250 + 1}" for i in range(args.targets)]
    where = "datagram namespace" if args.datagram else "host namespace"
    print(f"ICMP, {args.targets} loopback targets x {args.count} echoes, HTTP concurrency {args.concurrency}, "
          f"{where}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        s_rate, s_lost = bench_sotp(targets, args.count, args.concurrency, tmp)
        b_rate, b_lost = bench_blackbox(targets, args.count, args.concurrency, tmp)
    p_rate, p_lost, p_mode = bench_pinger(targets, args.count)
    i_rate, i_lost = bench_icmplib(targets, args.count, privileged=not args.datagram)
    print(f"{'':32} {'hosts/s':>10} {'false loss':>11}")
    print(f"{'SOTP /probe (count 3)':32} {s_rate:10.0f} {s_lost:11d}")
    print(f"{'blackbox_exporter /probe x3':32} {b_rate:10.0f} {b_lost:11d}")
    print(f"{'ratio SOTP / blackbox':32} {s_rate / b_rate:10.2f}")
    print(f"{'SOTP pinger in-process (' + p_mode + ')':32} {p_rate:10.0f} {p_lost:11d}")
    print(f"{'icmplib async_multiping':32} {i_rate:10.0f} {i_lost:11d}")
    if args.continuous_seconds > 0:
        with tempfile.TemporaryDirectory() as d:
            rows = bench_continuous(targets, args.continuous_seconds, args.datagram, Path(d))
        print(f"\ncontinuous, the same {args.targets} targets every 1 s, {args.continuous_seconds:.0f} s window")
        print(f"{'':32} {'echoes/s':>10} {'lost/sent':>15} {'CPU % core':>11}")
        for name, rate, lost, cpu in rows:
            print(f"{name:32} {rate:>10} {lost:>15} {cpu:>11}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
