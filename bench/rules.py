"""Rule evaluation: 1,000 recording rules over 10,000 series, SOTP's ruler beside Debian's Prometheus 2.42.

Both get the same data the way live senders deliver it — remote write, one sample per series per request
(10,000 series x 20 minutes at 15 s) — and the same rule file: one group of 1,000 recording rules (10
shapes x 100 metrics: sums/averages/maxima by job or instance of ``rate``, ``irate``, ``increase``,
``topk``, ``quantile``), evaluated every 15 s. Each system's own self-metric is read after the load:
Prometheus's ``prometheus_rule_group_last_duration_seconds`` and the ruler's
``sotp_rule_group_last_duration_seconds`` (``sotp serve`` receiving, ``sotp ruler`` evaluating, on one
SQLite file or PostgreSQL schema). Prints the median of several evaluations and the ratio.

    .venv/bin/python bench/rules.py                       # SQLite in a temporary directory
    .venv/bin/python bench/rules.py --storage postgresql://postgres@127.0.0.1:5432/test?schema=sotp_bench_rules
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sotp.codec.remote_write import encode_write_request  # noqa: E402
from sotp.model import Labels  # noqa: E402

STEP_MS = 15_000
SHAPES = [
    "sum by (job) (rate({m}[5m]))",
    "sum by (instance) (rate({m}[5m]))",
    "avg by (job) (rate({m}[5m]))",
    "max by (job) (rate({m}[1m]))",
    "sum(rate({m}[5m]))",
    "rate({m}[5m])",
    "count by (job) (increase({m}[10m]) > 0)",
    "topk(3, rate({m}[5m]))",
    "quantile by (job) (0.9, rate({m}[5m]))",
    "sum by (job) (irate({m}[2m]))",
]


def rule_file(metrics: int) -> str:
    lines = ["groups:", "  - name: bench", "    interval: 15s", "    rules:"]
    for k in range(metrics):
        for j, shape in enumerate(SHAPES):
            lines.append(f"      - record: bench:m{k}:shape{j}")
            lines.append(f"        expr: '{shape.format(m=f'bench_m{k}_total')}'")
    return "\n".join(lines) + "\n"


def bodies(metrics: int, instances: int, minutes: int, end_ms: int) -> list[bytes]:
    """One remote-write body per timestamp, each with every series once (the live shape)."""
    labels = [Labels({"__name__": f"bench_m{k}_total", "job": f"j{i % 10}", "instance": f"i{i}"})
              for k in range(metrics) for i in range(instances)]
    n = minutes * 60_000 // STEP_MS
    out = []
    for step in range(n):
        t = end_ms - (n - 1 - step) * STEP_MS
        out.append(encode_write_request((lb, [(t, float(step * (1 + s % 7)))]) for s, lb in enumerate(labels)))
    return out


def post(url: str, body: bytes) -> None:
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0"})
    with urllib.request.urlopen(req, timeout=300) as r:
        assert r.status in (200, 204), r.status


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(url: str, name: str) -> list[tuple[str, float]]:
    with urllib.request.urlopen(url, timeout=30) as r:
        text = r.read().decode()
    out = []
    for line in text.splitlines():
        if line.startswith(name):
            m = re.match(rf"^{name}(\{{[^}}]*\}})? (\S+)", line)
            if m:
                out.append((m.group(1) or "", float(m.group(2))))
    return out


def durations(url: str, name: str, ts_name: str, count: int, timeout: float) -> list[float]:
    """``count`` group durations, one per evaluation (new ``last_evaluation`` timestamp)."""
    seen: set[float] = set()
    out: list[float] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        ts = [v for _, v in metric(url, ts_name)]
        dur = [v for _, v in metric(url, name)]
        if ts and dur and ts[0] > 0 and ts[0] not in seen:
            seen.add(ts[0])
            if len(seen) > 1:  # skip the evaluation that may have overlapped the load
                out.append(dur[0])
        time.sleep(1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage", help="SOTP storage URL (default: SQLite in a temporary directory)")
    ap.add_argument("--metrics", type=int, default=100, help="metric names (x 10 rules each)")
    ap.add_argument("--instances", type=int, default=100, help="series per metric name")
    ap.add_argument("--minutes", type=int, default=20)
    ap.add_argument("--evaluations", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sotp-bench-rules-"))
    storage = args.storage or f"sqlite:///{tmp / 'sotp.db'}"
    (tmp / "rules.yml").write_text(rule_file(args.metrics))
    n_rules = args.metrics * len(SHAPES)
    print(f"{n_rules} recording rules over {args.metrics * args.instances:,} series "
          f"({args.minutes} min at 15 s, one sample per series per request)")
    end_ms = int(time.time() * 1000)
    t0 = time.perf_counter()
    payloads = bodies(args.metrics, args.instances, args.minutes, end_ms)
    print(f"encoded {len(payloads)} requests in {time.perf_counter() - t0:.1f}s")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pport, sport, rport = free_port(), free_port(), free_port()
        prom_bin = shutil.which("prometheus") or "/usr/bin/prometheus"
        (tmp / "prometheus.yml").write_text("global:\n  evaluation_interval: 15s\nrule_files: [rules.yml]\n")
        procs.append(subprocess.Popen(
            [prom_bin, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{pport}", "--web.enable-remote-write-receiver"],
            stdout=open(tmp / "prometheus.log", "wb"), stderr=subprocess.STDOUT, cwd=tmp))  # noqa: SIM115
        sotp = [sys.executable, "-m", "sotp"]
        procs.append(subprocess.Popen([*sotp, "serve", "--listen", f"127.0.0.1:{sport}", "--storage", storage],
                                      stdout=open(tmp / "serve.log", "wb"), stderr=subprocess.STDOUT))  # noqa: SIM115
        prom, serve = f"http://127.0.0.1:{pport}", f"http://127.0.0.1:{sport}"
        wait_http(f"{prom}/-/ready", procs[0])
        wait_http(f"{serve}/-/ready", procs[1])
        for name, base in (("Prometheus", prom), ("SOTP", serve)):
            t0 = time.perf_counter()
            for body in payloads:
                post(f"{base}/api/v1/write", body)
            print(f"{name} load (remote write): {time.perf_counter() - t0:.1f}s")
        procs.append(subprocess.Popen(
            [*sotp, "ruler", "--listen", f"127.0.0.1:{rport}", "--storage", storage,
             "--rule-file", str(tmp / "rules.yml")],
            stdout=open(tmp / "ruler.log", "wb"), stderr=subprocess.STDOUT))  # noqa: SIM115
        ruler = f"http://127.0.0.1:{rport}"
        wait_http(f"{ruler}/-/ready", procs[2])
        timeout = 60 + 30 * args.evaluations
        prom_d = durations(f"{prom}/metrics", "prometheus_rule_group_last_duration_seconds",
                           "prometheus_rule_group_last_evaluation_timestamp_seconds", args.evaluations, timeout)
        sotp_d = durations(f"{ruler}/metrics", "sotp_rule_group_last_duration_seconds",
                           "sotp_rule_group_last_evaluation_timestamp_seconds", args.evaluations, timeout * 4)
        samples = metric(f"{ruler}/metrics", "sotp_rule_group_last_evaluation_samples")
        missed = metric(f"{ruler}/metrics", "sotp_rule_group_iterations_missed_total")
        if not prom_d or not sotp_d:
            raise SystemExit(f"no evaluations measured (Prometheus {prom_d}, SOTP {sotp_d}); logs in {tmp}")
        p, s = statistics.median(prom_d), statistics.median(sotp_d)
        print(f"\n{'':28} {'SOTP':>10} {'Prometheus':>11} {'ratio':>7}")
        print(f"{'group evaluation (median)':28} {s * 1000:>8.0f}ms {p * 1000:>9.0f}ms {s / p:>6.1f}x")
        print(f"evaluations measured: SOTP {len(sotp_d)}, Prometheus {len(prom_d)}; "
              f"SOTP samples per evaluation {samples[0][1] if samples else '?'}, "
              f"missed iterations {missed[0][1] if missed else '?'}; storage {storage.split('@')[-1]}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
