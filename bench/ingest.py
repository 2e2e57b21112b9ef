"""Remote-write ingest as real senders load it: ``sotp serve`` on each backend beside Prometheus 2.42, same run.

Rows (``--rows``, default all three):

* ``live``: the live shape of issue 15 — 1 sample per series per request, 2,000 series per request,
  4 concurrent senders, each series always through the same sender, time-ordered (bench/loadgen.py).
* ``ten``: the same data with 10 samples per series per request.
* ``resend``: "resend of a committed batch" (issue 18) — one request of 10,000 series × 10 samples, then the
  very same request again (what a sender does when a 2xx is lost or a request times out); both timed.
  Target: the resend costs ≤ 1.5× the first send.

Every target is fresh: a new SQLite file, PostgreSQL schema or TimescaleDB database, a new Prometheus data
dir (``--web.enable-remote-write-receiver``), each server started for the row and stopped after it. SOTP is
the real server, started through its CLI (``.venv/bin/sotp serve --listen … --storage …``). Payloads are
encoded before the clock starts; afterwards each target is asked through its HTTP API (``count_over_time``)
whether every sample is there.

    .venv/bin/python bench/ingest.py                                   # every row, every backend
    .venv/bin/python bench/ingest.py --rows live --backends sqlite     # one row, one backend
    .venv/bin/python bench/ingest.py --rows resend --backends postgresql,timescaledb
    .venv/bin/python bench/ingest.py --series 2000 --minutes 20        # quick sizes

Prints each measurement as it finishes, then a Markdown table: samples/s and the ratio to Prometheus.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen, servers
from bench.loadgen import Dataset, Load, SendResult, Verification
from bench.servers import Server

ROWS = ("live", "ten", "resend")
RESEND_TARGET = 1.5
T = TypeVar("T")


@dataclass
class Measured:
    """One target's figures for one row."""

    target: str
    sent: SendResult
    verified: Verification | None
    cpu_s: float
    db_cpu_s: float
    rss_mib: float


def load_and_measure(server: Server, load: Load, data: Dataset, verify: bool) -> Measured:
    """Send ``load`` to ``server`` with the clock running, then (optionally) check every sample is there."""
    cpu0, db0 = server.cpu(), servers.postgres_cpu_s()
    sent = loadgen.send(server.write_url, load)
    cpu, db = server.cpu_since(cpu0), max(0.0, servers.postgres_cpu_s() - db0)  # exited backends drop out
    verified = loadgen.verify(server.base, data) if verify else None
    measured = Measured(server.name, sent, verified, cpu, db, server.rss_mib())
    print(f"  {server.name:>18}: {sent.describe()}", flush=True)
    print(f"  {'':>18}  server CPU {cpu:.1f} s, postgres CPU {db:.1f} s (all clusters), RSS {measured.rss_mib:.0f} MiB"
          + (f"; {verified.describe()}" if verified else ""), flush=True)
    return measured


def throughput_row(row: str, data: Dataset, load: Load, args: argparse.Namespace, tmp: Path) -> list[str]:
    """Prometheus, then every backend, each fresh, each loaded with the same payloads."""
    print(f"\n== {row}: {load.shape.describe()}; {load.describe()} (load average {servers.load_average()})",
          flush=True)
    results = on_every_target(args, tmp, lambda s: load_and_measure(s, load, data, args.verify))
    return [_throughput_line(row, m, results[0] if not args.no_prometheus else None) for m in results]


def on_every_target(args: argparse.Namespace, tmp: Path, measure: Callable[[Server], T]) -> list[T]:
    """``measure`` on a fresh Prometheus (unless ``--no-prometheus``), then on each backend's fresh sotp serve."""
    results: list[T] = []
    if not args.no_prometheus:
        with servers.serving(lambda: servers.start_prometheus(tmp)) as prom:
            results.append(measure(prom))
    for name in servers.chosen_backends(args):
        result = _on_backend(name, args, tmp, measure)
        if result is not None:
            results.append(result)
    return results


def _on_backend(name: str, args: argparse.Namespace, tmp: Path, measure: Callable[[Server], T]) -> T | None:
    """``measure(server)`` on a fresh ``sotp serve`` over a fresh ``name`` store; None when that cannot run."""
    try:
        with servers.fresh_backend(name, args, tmp) as backend, \
                servers.serving(lambda: servers.start_sotp(backend.url, tmp, f"sotp-{name}", args.serve_args)) as sotp:
            return measure(sotp)
    except servers.BackendUnavailable as err:
        print(f"  {'sotp-' + name:>18}: skipped, database unreachable: {err}", flush=True)
    except RuntimeError as err:
        print(f"  {'sotp-' + name:>18}: FAILED: {err}", flush=True)
    return None


def _throughput_line(row: str, m: Measured, ref: Measured | None) -> str:
    ratio = f"{m.sent.samples_per_s / ref.sent.samples_per_s:.2f}×" if ref and ref.sent.samples_per_s else "—"
    other = sum(m.sent.statuses.values()) - m.sent.ok
    verified = "—" if m.verified is None else ("all" if m.verified.ok else f"{m.verified.samples:,} (MISSING)")
    return (f"| {row} | {m.target} | {m.sent.samples_per_s:,.0f} | {ratio} | {m.sent.ok} / {other} | "
            f"{m.cpu_s:.1f} | {m.rss_mib:.0f} | {verified} |")


@dataclass
class Resent:
    """First send and resend of the same committed request on one target."""

    target: str
    first: SendResult
    again: SendResult
    verified: Verification | None

    @property
    def ratio(self) -> float:
        return self.again.seconds / self.first.seconds


def resend_and_measure(server: Server, load: Load, data: Dataset, verify: bool) -> Resent:
    first = loadgen.send(server.write_url, load)
    again = loadgen.send(server.write_url, load)
    verified = loadgen.verify(server.base, data) if verify else None
    resent = Resent(server.name, first, again, verified)
    print(f"  {server.name:>18}: first {first.seconds * 1000:,.0f} ms ({first.describe()})", flush=True)
    print(f"  {'':>18}  again {again.seconds * 1000:,.0f} ms ({again.describe()}) = {resent.ratio:.2f}× the first"
          + (f"; {verified.describe()}" if verified else ""), flush=True)
    return resent


def resend_row(args: argparse.Namespace, tmp: Path) -> list[str]:
    data = loadgen.make_dataset(args.resend_series, 10 * args.step, args.step)
    load = loadgen.encode(data, loadgen.Shape(10, args.resend_series, 1))
    print(f"\n== resend of a committed batch: {load.describe()} (load average {servers.load_average()})", flush=True)
    results = on_every_target(args, tmp, lambda s: resend_and_measure(s, load, data, args.verify))
    return [_resend_line(r) for r in results]


def _resend_line(r: Resent) -> str:
    """A rejected resend is stated, not timed: Prometheus 2.42 answers 400 "out of order sample" to the older
    samples of a repeated multi-sample request (the sender drops it), so its row is no cost reference."""
    if r.again.failed:
        again, ratio, ok = f"rejected: {r.again.first_error[:40]}", "—", "—"
    else:
        again, ratio = f"{r.again.seconds * 1000:,.0f}", f"{r.ratio:.2f}×"
        ok = "yes" if r.ratio <= RESEND_TARGET else "no"
    return f"| resend | {r.target} | {r.first.seconds * 1000:,.0f} | {again} | {ratio} | {ok} |"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated rows (of {', '.join(ROWS)})")
    p.add_argument("--series", type=int, default=10_000, help="series in the dataset (rows live and ten)")
    p.add_argument("--minutes", type=int, default=60, help="time span of the dataset")
    p.add_argument("--step", type=int, default=15, help="seconds between samples")
    p.add_argument("--senders", type=int, default=4, help="concurrent senders (shards)")
    p.add_argument("--series-per-request", type=int, default=2_000)
    p.add_argument("--resend-series", type=int, default=10_000, help="series × 10 samples in the resent request")
    p.add_argument("--no-prometheus", action="store_true", help="skip the reference (no ratios)")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the count_over_time check")
    servers.add_backend_args(p)
    return p.parse_args()


def main() -> int:
    args = parse_args()
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if set(rows) - set(ROWS):
        raise SystemExit(f"unknown row(s) {sorted(set(rows) - set(ROWS))}: use {', '.join(ROWS)}")
    tmp = Path(tempfile.mkdtemp(prefix="sotp-bench-ingest-"))
    throughput: list[str] = []
    resends: list[str] = []
    try:
        shapes = [(row, k) for row, k in (("live", 1), ("ten", 10)) if row in rows]
        if shapes:
            data = loadgen.make_dataset(args.series, args.minutes * 60, args.step)
            print(f"dataset: {data.describe()}", flush=True)
        for row, k in shapes:
            started = time.perf_counter()
            load = loadgen.encode(data, loadgen.Shape(k, args.series_per_request, args.senders))
            print(f"encoded {row} in {time.perf_counter() - started:.1f} s", flush=True)
            throughput += throughput_row(row, data, load, args, tmp)
        if "resend" in rows:
            resends = resend_row(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_tables(throughput, resends)
    return 0


def print_tables(throughput: list[str], resends: list[str]) -> None:
    if throughput:
        print("\n| row | target | samples/s | ratio to Prometheus | 2xx / other | server CPU s | RSS MiB | verified |")
        print("|---|---|---:|---:|---:|---:|---:|---|")
        print("\n".join(throughput))
    if resends:
        print(f"\n| row | target | first send ms | resend ms | resend / first | ≤ {RESEND_TARGET}× |")
        print("|---|---|---:|---:|---:|---|")
        print("\n".join(resends))


if __name__ == "__main__":
    raise SystemExit(main())
