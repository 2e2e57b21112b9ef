"""A real Prometheus 2.42 scraping targets and remote-writing to ``sotp serve``: does SOTP keep up?

``--targets`` exposition targets (one stub process, one port each, ``--series`` series in total: counters
``c``, gauges ``g``, histograms ``h``) are scraped every ``--interval`` seconds by Prometheus 2.42 (fresh data
dir) whose ``remote_write`` has two queues with the **default** ``queue_config``: one to ``sotp serve`` (fresh
store per backend, the real server via its CLI) and one, as the reference, to a second Prometheus 2.42
with ``--web.enable-remote-write-receiver``. Both queues carry the same scrapes at the same time.

Every interval the sender's own metrics are read per queue: ``prometheus_remote_storage_samples_pending``,
``…_samples_failed_total``, ``…_samples_retried_total``, ``…_samples_total`` (sent), ``…_shards`` and the lag
(``…_highest_timestamp_in_seconds`` − ``…_queue_highest_sent_timestamp_seconds``). SOTP keeps up when no
sample failed, its pending samples stay within one scrape round of the reference queue's (same sender, same
readings) and the lag stays within two intervals.
Afterwards SOTP and the reference must hold the same number of samples of ``c``, ``g`` and ``h_bucket``.

    .venv/bin/python bench/prometheus_sender.py                          # every backend, 4 min each
    .venv/bin/python bench/prometheus_sender.py --backends sqlite --minutes 2
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen, servers
from bench.servers import Server
from sotp.codec.textparse import parse

PREFIX = "prometheus_remote_storage_"
BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf")


# -- the targets ----------------------------------------------------------------------------------

def page(target: int, n_series: int, now_s: float) -> str:
    """One target's exposition: half counters ``c``, 40 % gauges ``g``, the rest histograms ``h`` (12 series
    each: 10 buckets, sum, count). Values move with the clock so every scrape brings new samples."""
    n_c, n_g = n_series // 2, n_series * 2 // 5
    n_h = (n_series - n_c - n_g) // (len(BUCKETS) + 2)
    tick = int(now_s)
    out = ["# TYPE c counter\n"]
    out += [f'c{{id="{k}"}} {tick * (k % 7 + 1) + target}\n' for k in range(n_c)]
    out.append("# TYPE g gauge\n")
    out += [f'g{{id="{k}"}} {50 + 10 * math.sin(now_s / 60 + k):.3f}\n' for k in range(n_g)]
    out.append("# TYPE h histogram\n")
    for k in range(n_h):
        out += [f'h_bucket{{id="{k}",le="{le}"}} {tick * (b + 1)}\n' for b, le in enumerate(BUCKETS)]
        out.append(f'h_sum{{id="{k}"}} {tick * 0.37:.2f}\nh_count{{id="{k}"}} {tick * len(BUCKETS)}\n')
    return "".join(out)


def serve_targets(ports: list[int], n_series: int) -> None:
    """The stub process: ``/metrics`` on each port, ``n_series // len(ports)`` series each."""
    from aiohttp import web

    def handler(target: int) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def metrics(request: web.Request) -> web.Response:
            text = page(target, n_series // len(ports), time.time())
            return web.Response(text=text, content_type="text/plain", charset="utf-8")
        return metrics

    async def main() -> None:
        for i, port in enumerate(ports):
            app = web.Application()
            app.router.add_get("/metrics", handler(i))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(main())


def start_targets(n_targets: int, n_series: int, workdir: Path) -> tuple[subprocess.Popen[bytes], list[int]]:
    ports = [servers.free_port() for _ in range(n_targets)]
    argv = [sys.executable, __file__, "--serve-targets", ",".join(map(str, ports)), "--series", str(n_series)]
    with open(workdir / "targets.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports[-1]}/metrics", timeout=2):
                return proc, ports
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"exposition targets did not answer within 30 s (log {workdir / 'targets.log'})")


def sender_config(ports: list[int], interval: int, remotes: dict[str, str]) -> str:
    """Prometheus config: one scrape job over the targets, one remote_write per receiver, default queues."""
    targets = ", ".join(f"'127.0.0.1:{p}'" for p in ports)
    writes = "".join(f"  - url: {url}\n    name: {name}\n" for name, url in remotes.items())
    return (f"global:\n  scrape_interval: {interval}s\n  scrape_timeout: {min(interval, 10)}s\n"
            f"scrape_configs:\n  - job_name: bench\n    static_configs:\n      - targets: [{targets}]\n"
            f"remote_write:\n{writes}")


# -- the sender's view ----------------------------------------------------------------------------

@dataclass(frozen=True)
class QueueState:
    """One remote-write queue of the sender at one moment."""

    at: float
    sent: float
    pending: float
    failed: float
    retried: float
    shards: float
    lag_s: float


def queue_states(sender: Server) -> dict[str, QueueState]:
    """Per ``remote_name``: the sender's remote-storage metrics now."""
    with urllib.request.urlopen(f"{sender.base}/metrics", timeout=10) as resp:
        exposition = parse(resp.read().decode())
    by_queue: dict[str, dict[str, float]] = {}
    highest = 0.0
    for s in exposition.samples:
        if s.name == PREFIX + "highest_timestamp_in_seconds":
            highest = s.value
        elif s.name.startswith(PREFIX) and (queue := dict(s.labels).get("remote_name")):
            by_queue.setdefault(queue, {})[s.name.removeprefix(PREFIX)] = s.value
    now = time.monotonic()
    return {name: QueueState(now, m.get("samples_total", 0.0), m.get("samples_pending", 0.0),
                             m.get("samples_failed_total", 0.0), m.get("samples_retried_total", 0.0),
                             m.get("shards", 0.0), highest - m.get("queue_highest_sent_timestamp_seconds", 0.0))
            for name, m in by_queue.items()}


def watch(sender: Server, sotp: Server, minutes: float, interval: int) -> dict[str, list[QueueState]]:
    """Read the queues every interval for ``minutes``; print one line per reading."""
    history: dict[str, list[QueueState]] = {}
    print(f"{'t s':>5} {'queue':>9} {'sent/s':>8} {'pending':>8} {'failed':>6} {'retried':>7} {'shards':>6} "
          f"{'lag s':>6} | sotp RSS MiB, CPU %", flush=True)
    started = time.monotonic()
    cpu_before = sotp.cpu()
    while time.monotonic() - started < minutes * 60:
        time.sleep(interval)
        cpu_pct = 100 * sotp.cpu_since(cpu_before) / interval
        cpu_before = sotp.cpu()
        for name, state in sorted(queue_states(sender).items()):
            past = history.setdefault(name, [])
            rate = (state.sent - past[-1].sent) / (state.at - past[-1].at) if past else 0.0
            past.append(state)
            print(f"{state.at - started:>5.0f} {name:>9} {rate:>8,.0f} {state.pending:>8,.0f} {state.failed:>6,.0f} "
                  f"{state.retried:>7,.0f} {state.shards:>6.0f} {state.lag_s:>6.1f} | "
                  f"{sotp.rss_mib():.0f}, {cpu_pct:.0f} %", flush=True)
    return history


@dataclass(frozen=True)
class Verdict:
    queue: str
    sent_per_s: float
    max_pending: float
    max_excess: float
    failed: float
    retried: float
    max_lag_s: float
    keeps_up: bool


def judge(name: str, states: list[QueueState], reference: list[QueueState], round_samples: int,
          interval: int) -> Verdict:
    """Over the readings after the first (warm-up) one: failures, the pending bound and the lag.

    The pending bound is taken against the reference queue of the same sender at the same readings:
    Prometheus 2.42's ``samples_pending`` creeps up by about one sample per target per scrape on a queue to
    its own receiver too (measured: +10 per interval with 10 targets), so the excess over the reference is
    what says whether the receiver keeps up; it must stay below one scrape round."""
    measured, ref = states[1:] or states, reference[1:] or reference
    first, last = measured[0], measured[-1]
    rate = (last.sent - first.sent) / (last.at - first.at) if last.at > first.at else 0.0
    max_pending = max(s.pending for s in measured)
    max_excess = max(s.pending - r.pending for s, r in zip(measured, ref, strict=False))
    max_lag = max(s.lag_s for s in measured)
    keeps_up = last.failed == 0 and max_excess < round_samples and max_lag <= 2 * interval
    return Verdict(name, rate, max_pending, max_excess, last.failed, last.retried, max_lag, keeps_up)


def compare_stores(sotp: Server, reference: Server, at_ms: int, minutes: float) -> str:
    """Samples of each scraped family in SOTP and in the reference over the run, at ``at_ms``."""
    parts = []
    for name in ("c", "g", "h_bucket"):
        query = f'sum(count_over_time({name}{{job="bench"}}[{int(minutes * 60) + 120}s]))'
        ours = loadgen.instant_value(sotp.base, query, at_ms)
        theirs = loadgen.instant_value(reference.base, query, at_ms)
        parts.append(f"{name}: {ours:,.0f} vs {theirs:,.0f}{'' if ours == theirs else ' DIFFER'}")
    return "samples in SOTP vs reference — " + "; ".join(parts)


def run_backend(name: str, ports: list[int], args: argparse.Namespace, tmp: Path) -> list[Verdict]:
    with servers.fresh_backend(name, args, tmp) as backend, \
            servers.serving(lambda: servers.start_sotp(backend.url, tmp, f"sotp-{name}", args.serve_args)) as sotp, \
            servers.serving(lambda: servers.start_prometheus(tmp / name, name="reference")) as ref:
        config = sender_config(ports, args.interval, {"sotp": sotp.write_url, "reference": ref.write_url})
        with servers.serving(lambda: servers.start_prometheus(tmp / name, config, "sender")) as sender:
            print(f"\n== {name}: Prometheus scraping {len(ports)} targets × {args.series // len(ports):,} series "
                  f"every {args.interval} s, default queue_config (load average {servers.load_average()})",
                  flush=True)
            history = watch(sender, sotp, args.minutes, args.interval)
        # The sender stopped (it flushes its queues on shutdown); what each receiver holds is now final.
        print(compare_stores(sotp, ref, int(time.time() * 1000), args.minutes), flush=True)
    round_samples = args.series + 5 * len(ports)  # + Prometheus's own series per target (up, scrape_*)
    reference = history.get("reference", [])
    return [judge(q, states, reference, round_samples, args.interval) for q, states in sorted(history.items())]


def print_table(results: dict[str, list[Verdict]]) -> None:
    print("\n| backend | queue | samples sent/s | max pending | above reference | failed | retried | max lag s "
          "| keeps up |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for backend, verdicts in results.items():
        for v in verdicts:
            print(f"| {backend} | {v.queue} | {v.sent_per_s:,.0f} | {v.max_pending:,.0f} | {v.max_excess:,.0f} | "
                  f"{v.failed:,.0f} | "
                  f"{v.retried:,.0f} | {v.max_lag_s:.1f} | {'yes' if v.keeps_up else 'NO'} |")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=int, default=10)
    p.add_argument("--series", type=int, default=10_000, help="series over all targets")
    p.add_argument("--interval", type=int, default=15, help="scrape interval, seconds")
    p.add_argument("--minutes", type=float, default=4.0, help="how long each backend is watched")
    p.add_argument("--serve-targets", help=argparse.SUPPRESS)
    servers.add_backend_args(p)
    return p.parse_args()


def main() -> int:
    args = parse_args()
    if args.serve_targets:
        serve_targets([int(p) for p in args.serve_targets.split(",")], args.series)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="sotp-bench-sender-"))
    results: dict[str, list[Verdict]] = {}
    targets, ports = start_targets(args.targets, args.series, tmp)
    try:
        for name in servers.chosen_backends(args):
            try:
                results[name] = run_backend(name, ports, args, tmp)
            except servers.BackendUnavailable as err:
                print(f"\n{name}: skipped, database unreachable: {err}", flush=True)
            except RuntimeError as err:
                print(f"\n{name}: FAILED: {err}", flush=True)
    finally:
        targets.terminate()
        targets.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
