"""SNMP exporter benchmark: scrape ``if_mib`` from an snmpd with >= 50 interfaces.

SOTP (each backend) beside Debian's prometheus-snmp-exporter 0.21 (upstream's v0.21 if_mib file) in the
same run, same agent, same module: median wall time of 20 HTTP scrapes each, interleaved round-robin
so machine load hits all alike; prints the ratio to snmp_exporter.

Needs root: it creates a network namespace with dummy links (veth pairs where the kernel has no dummy
driver), runs snmpd and all exporters inside it on 127.0.0.1, and removes the namespace at the end.

    sudo .venv/bin/python bench/snmp.py [--scrapes 20] [--interfaces 52]

``--limits`` (no root) times the failure and concurrency rules instead, which the tests check as
behaviour only: a silent device (2 tries of 300 ms), three scrapes of one device with
``max_concurrent_per_target: 1`` (one after the other), three devices at once, the whole exporter
limited to one scrape, Prometheus' scrape-timeout header (1.5 s: 1 s budget) and SIGTERM with a scrape
in flight; snmp_exporter 0.21 beside it where it has the same rule.

    .venv/bin/python bench/snmp.py --limits
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_V021 = REPO / "tests" / "fixtures" / "snmp_exporter" / "snmp_exporter_v0.21.0_if_mib.yml"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def make_namespace(name: str, interfaces: int) -> str:
    """Create ``name`` with ``interfaces`` links besides lo; returns the link kind used."""
    sh("ip", "netns", "add", name)
    sh("ip", "-n", name, "link", "set", "lo", "up")
    if sh("ip", "-n", name, "link", "add", "d0", "type", "dummy", check=False).returncode == 0:
        for i in range(1, interfaces):
            sh("ip", "-n", name, "link", "add", f"d{i}", "type", "dummy")
        return "dummy"
    for i in range((interfaces + 1) // 2):
        sh("ip", "-n", name, "link", "add", f"v{i}", "type", "veth", "peer", "name", f"w{i}")
    return "veth"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(url)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(url: str) -> tuple[float, bytes]:
    start = time.perf_counter()
    body = urllib.request.urlopen(url, timeout=30).read()
    return time.perf_counter() - start, body


def inside(args: argparse.Namespace) -> int:
    """Runs in the namespace: agents, exporters, measurements."""
    work = Path(tempfile.mkdtemp(prefix="sotp-snmp-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        agent_port = free_port()
        conf = work / "snmpd.conf"
        conf.write_text("rocommunity public 127.0.0.1\ndontLogTCPWrappersConnects yes\n")
        env = {**os.environ, "SNMP_PERSISTENT_DIR": str(work), "MIBS": "", "MIBDIRS": str(work)}
        procs.append(subprocess.Popen(["snmpd", "-f", "-C", "-c", str(conf), "-Lf", str(work / "snmpd.log"),
                                       f"udp:127.0.0.1:{agent_port}"], env=env))
        exporters: dict[str, str] = {}
        pids: dict[str, int] = {}
        port = free_port()
        procs.append(subprocess.Popen(["prometheus-snmp-exporter", f"--config.file={SHARED_V021}",
                                       f"--web.listen-address=127.0.0.1:{port}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        exporters["snmp_exporter 0.21"] = f"http://127.0.0.1:{port}"
        pids["snmp_exporter 0.21"] = procs[-1].pid
        for backend in ("pysnmp", "ezsnmp", "native"):
            port = free_port()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "sotp", "exporter", "snmp", "--backend", backend, "--listen",
                 f"127.0.0.1:{port}", "--config", str(SHARED_V021)],
                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            exporters[f"SOTP {backend}"] = f"http://127.0.0.1:{port}"
            pids[f"SOTP {backend}"] = procs[-1].pid
        for url in exporters.values():
            wait_http(url + "/metrics")
        query = f"/snmp?target=127.0.0.1:{agent_port}&module=if_mib"
        times: dict[str, list[float]] = {name: [] for name in exporters}
        interfaces = 0
        for name, url in exporters.items():  # warm-up (JIT-free Python still has caches to fill)
            for _ in range(2):
                _, body = scrape(url + query)
            if "snmp_scrape_error" in body.decode() or "ifOperStatus{" not in body.decode():
                raise SystemExit(f"{name} failed to scrape: {body.decode()[:500]}")
            interfaces = body.decode().count("ifOperStatus{")
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        for _ in range(args.scrapes):
            for name, url in exporters.items():
                seconds, _ = scrape(url + query)
                times[name].append(seconds)
        cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / args.scrapes for name, pid in pids.items()}
        ref = statistics.median(times["snmp_exporter 0.21"])
        load = os.getloadavg()[0]
        print(f"if_mib scrape of snmpd with {interfaces} interfaces, median of {args.scrapes} (load {load:.1f})")
        ref_cpu = cpu["snmp_exporter 0.21"]
        print(f"{'exporter':<22}{'median ms':>10}{'min ms':>9}{'ratio':>8}{'CPU ms/scrape':>15}{'CPU ratio':>10}")
        for name, values in times.items():
            med = statistics.median(values)
            print(f"{name:<22}{med * 1000:>10.1f}{min(values) * 1000:>9.1f}{med / ref:>7.2f}x"
                  f"{cpu[name] * 1000:>15.1f}{cpu[name] / ref_cpu:>9.2f}x")
        return 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


def timed_scrapes(url: str, queries: list[str], headers: dict[str, str] | None = None) -> float:
    """Seconds until all ``queries`` (run at once) have answered."""
    import threading

    def one(q: str) -> None:
        # snmp_exporter answers a failed scrape with 500; an exporter being stopped closes the socket.
        with contextlib.suppress(OSError):
            urllib.request.urlopen(urllib.request.Request(url + q, headers=headers or {}), timeout=60).read()

    start = time.perf_counter()
    threads = [threading.Thread(target=one, args=(q,)) for q in queries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def limits() -> int:
    """Time the failure and concurrency rules (see the module docstring)."""
    import yaml

    work = Path(tempfile.mkdtemp(prefix="sotp-snmp-limits-"))
    quick = {"get": ["1.3.6.1.2.1.1.5.0"], "timeout": "300ms", "retries": 1,
             "metrics": [{"name": "sysName", "oid": "1.3.6.1.2.1.1.5", "type": "DisplayString"}]}
    (work / "sotp.yml").write_text(yaml.safe_dump({
        "modules": {"quick": quick, "slow": {**quick, "timeout": "5s", "retries": 3}},
        "exporter": {"max_concurrent_per_target": 1}}))
    (work / "oracle.yml").write_text(yaml.safe_dump({"quick": quick, "slow": {**quick, "timeout": "5s", "retries": 3}}))
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str]) -> str:
        port = free_port()
        procs.append(subprocess.Popen([*argv, f"127.0.0.1:{port}"], cwd=REPO, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)}))
        wait_http(f"http://127.0.0.1:{port}/metrics")
        return f"http://127.0.0.1:{port}"

    sotp = [sys.executable, "-m", "sotp", "exporter", "snmp", "--backend", "native", "--config"]
    try:
        ours = start([*sotp, str(work / "sotp.yml"), "--listen"])
        single = start([*sotp, str(work / "sotp.yml"), "--max-concurrent-scrapes", "1", "--listen"])
        oracle = start(["prometheus-snmp-exporter", f"--config.file={work / 'oracle.yml'}", "--web.listen-address"])
        # Silent devices: bound UDP sockets that never answer (a closed port would refuse at once).
        silent = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        for s in silent:
            s.bind(("127.0.0.1", 0))
        dead = [f"/snmp?target=127.0.0.1:{s.getsockname()[1]}&module=quick" for s in silent]
        header = {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}
        closed = f"/snmp?target=127.0.0.1:{free_port()}&module=slow"
        rows = [
            ("silent device, 2 tries of 300 ms", 0.6, timed_scrapes(ours, dead[:1]), timed_scrapes(oracle, dead[:1])),
            ("3 scrapes of one device, per-target limit 1", 1.8, timed_scrapes(ours, [dead[0]] * 3),
             timed_scrapes(oracle, [dead[0]] * 3)),
            ("3 devices at once", 0.6, timed_scrapes(ours, dead), timed_scrapes(oracle, dead)),
            ("3 devices, max_concurrent_scrapes 1", 1.8, timed_scrapes(single, dead), None),
            ("module of 4 x 5 s, scrape timeout header 1.5 s", 1.0,
             timed_scrapes(ours, [dead[0].replace("quick", "slow")], header), None),
            # Nothing bound: the kernel answers ICMP port unreachable, which a connected socket sees.
            ("closed port, module of 4 x 5 s", 0.0, timed_scrapes(ours, [closed]), timed_scrapes(oracle, [closed])),
        ]
        stopping = subprocess.Popen([*sotp, str(work / "sotp.yml"), "--listen", f"127.0.0.1:{(port := free_port())}"],
                                    cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{port}/metrics")
        import threading

        threading.Thread(target=lambda: timed_scrapes(f"http://127.0.0.1:{port}", [dead[0].replace("quick", "slow")]),
                         daemon=True).start()
        time.sleep(0.5)
        begin = time.perf_counter()
        stopping.terminate()
        stopping.wait(30)
        rows.append(("SIGTERM with a 20 s scrape in flight", 1.0, time.perf_counter() - begin, None))
        print(f"load average {os.getloadavg()[0]:.1f}")
        print(f"{'rule':<50}{'expected s':>11}{'SOTP s':>9}{'snmp_exporter s':>17}")
        for name, expected, got, ref in rows:
            print(f"{name:<50}{expected:>11.1f}{got:>9.2f}{'' if ref is None else f'{ref:.2f}':>17}")
        return 0
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limits", action="store_true", help="time the failure and concurrency rules (no root)")
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--interfaces", type=int, default=52, help="links besides lo (>= 50 for the target)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        return inside(args)
    if args.limits:
        return limits()
    for tool in ("ip", "snmpd", "prometheus-snmp-exporter"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/snmp.py needs {tool!r} (apt-get install iproute2 snmpd prometheus-snmp-exporter)")
    if os.geteuid() != 0:
        raise SystemExit("bench/snmp.py needs root to create a network namespace")
    if not SHARED_V021.exists():
        raise SystemExit(f"bench/snmp.py needs {SHARED_V021}")
    name = f"sotp-snmp-bench-{os.getpid()}"
    try:
        kind = make_namespace(name, args.interfaces)
        print(f"namespace {name}: lo + {args.interfaces} {kind} links")
        return subprocess.run(["ip", "netns", "exec", name, sys.executable, __file__, "--inside",
                               "--scrapes", str(args.scrapes)], check=False).returncode
    finally:
        sh("ip", "netns", "del", name, check=False)


if __name__ == "__main__":
    raise SystemExit(main())
