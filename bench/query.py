"""Dashboard queries on data loaded the way real senders load it: ``sotp serve`` beside Prometheus 2.42.

Both are loaded through their HTTP remote-write endpoint with the same pre-encoded payloads from
bench/loadgen.py — by default the live shape (1 sample per series per request, 2,000 series per request,
4 senders; ``--shape 10`` for 10 samples per series per request) — 10,000 series × 1 h at 15 s, checked
afterwards with ``count_over_time``. Then the dashboard query set runs as range queries over that hour at
steps of 15 s and 60 s over HTTP, median of ``--repeat`` (5) after one warm-up, SOTP and Prometheus in turn
per query. Prints each row's milliseconds on both and the ratio, per backend, and the resident size of the
``sotp serve`` process after the load.

``--compact`` then stops ``sotp serve``, opens the same store in this process, moves everything its head
holds into blocks (``flush(now, before=data end + 1)``, when the store has a head), calls its compaction hook
(``compact(now)`` with ``now`` far enough past the data that every window counts as closed), closes it,
starts ``sotp serve`` again and times the set once more. Prometheus cannot be made to compact a 1 h head
(it cuts a block once the head spans 3 h; no API forces it), so its figures stay those of its head.

    .venv/bin/python bench/query.py                                     # live shape, every backend
    .venv/bin/python bench/query.py --shape 10                          # row (b): 10 samples/series/request
    .venv/bin/python bench/query.py --compact --backends postgresql     # also after forced compaction
    .venv/bin/python bench/query.py --series 2000 --minutes 30          # quick sizes
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen, servers
from bench.loadgen import Dataset, Load
from bench.servers import Server

QUERIES = (
    "sum by (job) (rate(c[5m]))",
    'rate(c{instance="i-7"}[5m])',
    "topk(5, avg_over_time(g[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))",
)
STEPS = (15, 60)
TARGET = 1.5


@dataclass(frozen=True)
class Timing:
    """One query at one step on both servers: median milliseconds and result series."""

    query: str
    step: int
    sotp_ms: float
    prom_ms: float
    sotp_series: int
    prom_series: int

    @property
    def ratio(self) -> float:
        return self.sotp_ms / self.prom_ms


def timed_query(base: str, query: str, data: Dataset, step: int) -> tuple[float, int]:
    """Seconds for one ``query_range`` over the dataset's last hour, and the number of series returned."""
    end = data.end_ms / 1000
    params = {"query": query, "start": f"{end - 3600:.3f}", "end": f"{end:.3f}", "step": str(step)}
    started = time.perf_counter()
    result = loadgen.api_get(base, "/api/v1/query_range", params)
    took = time.perf_counter() - started
    assert isinstance(result, dict)
    return took, len(result["result"])


def median_ms(base: str, query: str, data: Dataset, step: int, repeat: int) -> tuple[float, int]:
    timed_query(base, query, data, step)  # warm-up: caches, connections
    runs = [timed_query(base, query, data, step) for _ in range(repeat)]
    return statistics.median(t for t, _ in runs) * 1000, runs[0][1]


def query_set(sotp: Server, prom: Server, data: Dataset, repeat: int, label: str) -> list[Timing]:
    """The dashboard set on both servers, each query SOTP then Prometheus; prints one line per row."""
    print(f"\n{label} (load average {servers.load_average()})")
    print(f"{'query':60} {'step':>4} {'series':>6} {'SOTP ms':>9} {'Prom ms':>8} {'ratio':>6}", flush=True)
    out: list[Timing] = []
    for query in QUERIES:
        for step in STEPS:
            s_ms, s_n = median_ms(sotp.base, query, data, step, repeat)
            p_ms, p_n = median_ms(prom.base, query, data, step, repeat)
            t = Timing(query, step, s_ms, p_ms, s_n, p_n)
            flag = "" if t.ratio <= TARGET else f"  > {TARGET}×"
            flag += "" if s_n == p_n else f"  SERIES DIFFER (Prometheus {p_n})"
            print(f"{query:60} {step:>3}s {s_n:>6} {s_ms:>9.1f} {p_ms:>8.1f} {t.ratio:>5.2f}×{flag}", flush=True)
            out.append(t)
    ratios = [t.ratio for t in out]
    print(f"worst {max(ratios):.2f}×, median {statistics.median(ratios):.2f}× (target ≤ {TARGET}×)", flush=True)
    return out


def force_compaction(storage_url: str, data: Dataset) -> str:
    """Run the store's compaction in this process (``sotp serve`` must be stopped); says what it did."""
    return asyncio.run(_force_compaction(storage_url, data.end_ms))


async def _force_compaction(storage_url: str, end_ms: int) -> str:
    from sotp.storage import open_storage

    store = open_storage(storage_url)
    await store.open()
    try:
        done = [await _flush_head(store, end_ms)]
        compact = getattr(store, "compact", None)
        if compact is None:
            return f"NO COMPACTION HOOK: {type(store).__name__} has no compact(now_ms); " + "; ".join(done)
        # Every window counts as closed when "now" is past the data by the store's block and waiting time.
        now_ms = end_ms + 2 * getattr(store, "block_ms", 7_200_000) + getattr(store, "compact_after_ms", 0)
        started = time.perf_counter()
        removed = await compact(now_ms)
        done.append(f"{type(store).__name__}.compact(now = data end + {(now_ms - end_ms) / 3_600_000:.1f} h) "
                    f"removed {removed:,} rows in {time.perf_counter() - started:.1f} s")
        return "; ".join(done)
    finally:
        await store.close()


async def _flush_head(store: object, end_ms: int) -> str:
    """Move everything a head holds into blocks (``flush(now, before=…)``), if the store has a head."""
    flush = getattr(store, "flush", None)
    if flush is None:
        return "no head to flush"
    started = time.perf_counter()
    try:
        moved = await flush(end_ms + 1, before=end_ms + 1)
    except TypeError as err:
        return f"HEAD NOT FLUSHED: flush() no longer takes (now_ms, before=): {err}"
    return f"head flush moved {moved:,} samples into blocks in {time.perf_counter() - started:.1f} s"


@dataclass
class BackendRun:
    name: str
    shape: str
    rss_mib: float
    live: list[Timing]
    compacted: list[Timing] | None


def run_backend(name: str, prom: Server, data: Dataset, load: Load, args: argparse.Namespace,
                tmp: Path) -> BackendRun:
    """Load a fresh store through ``sotp serve``, time the set, and (``--compact``) again after compaction."""
    with servers.fresh_backend(name, args, tmp) as backend:
        start = lambda: servers.start_sotp(backend.url, tmp, f"sotp-{name}", args.serve_args)  # noqa: E731
        with servers.serving(start) as sotp:
            load_into(sotp, load, data, args.verify)
            rss = sotp.rss_mib()
            print(f"sotp serve ({name}) RSS after load: {rss:.0f} MiB", flush=True)
            live = query_set(sotp, prom, data, args.repeat, f"{name}, {args.shape} shape, as loaded")
        if not args.compact:
            return BackendRun(name, args.shape, rss, live, None)
        print(force_compaction(backend.url, data), flush=True)
        started = time.perf_counter()
        with servers.serving(start) as sotp:
            print(f"sotp serve ({name}) ready again after {time.perf_counter() - started:.1f} s, "
                  f"RSS {sotp.rss_mib():.0f} MiB", flush=True)
            compacted = query_set(sotp, prom, data, args.repeat, f"{name}, after forced compaction")
        return BackendRun(name, args.shape, rss, live, compacted)


def load_into(server: Server, load: Load, data: Dataset, verify: bool) -> None:
    sent = loadgen.send(server.write_url, load)
    print(f"{server.name} load: {sent.describe()}", flush=True)
    if verify:
        print(f"{server.name} check: {loadgen.verify(server.base, data).describe()}", flush=True)


def print_table(runs: list[BackendRun], prom_rss: float) -> None:
    print(f"\nPrometheus 2.42 RSS after load: {prom_rss:.0f} MiB; "
          + ", ".join(f"sotp serve ({r.name}): {r.rss_mib:.0f} MiB" for r in runs))
    print("\n| backend | data | query | step | Prometheus ms | SOTP ms | ratio |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in runs:
        for label, timings in ((f"{r.shape} shape, as loaded", r.live), ("after compaction", r.compacted or [])):
            for t in timings:
                print(f"| {r.name} | {label} | `{t.query}` | {t.step} s | {t.prom_ms:,.1f} | {t.sotp_ms:,.1f} | "
                      f"{t.ratio:.2f}× |")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=("live", "10"), default="live",
                   help="live: 1 sample/series/request; 10: 10 samples/series/request")
    p.add_argument("--compact", action="store_true", help="also measure after forcing the store's compaction")
    p.add_argument("--series", type=int, default=10_000)
    p.add_argument("--minutes", type=int, default=60, help="time span of the data (queries cover the last hour)")
    p.add_argument("--step", type=int, default=15, help="seconds between samples")
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--series-per-request", type=int, default=2_000)
    p.add_argument("--repeat", type=int, default=5, help="timed runs per query (median), after one warm-up")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the count_over_time check")
    servers.add_backend_args(p)
    return p.parse_args()


def main() -> int:
    args = parse_args()
    data = loadgen.make_dataset(args.series, args.minutes * 60, args.step)
    shape = loadgen.Shape(1 if args.shape == "live" else 10, args.series_per_request, args.senders)
    load = loadgen.encode(data, shape)
    print(f"dataset: {data.describe()}; {shape.describe()}; {load.describe()}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="sotp-bench-query-"))
    runs: list[BackendRun] = []
    try:
        with servers.serving(lambda: servers.start_prometheus(tmp)) as prom:
            load_into(prom, load, data, args.verify)
            prom_rss = prom.rss_mib()
            for name in servers.chosen_backends(args):
                try:
                    runs.append(run_backend(name, prom, data, load, args, tmp))
                except servers.BackendUnavailable as err:
                    print(f"\n{name}: skipped, database unreachable: {err}", flush=True)
                except RuntimeError as err:
                    print(f"\n{name}: FAILED: {err}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(runs, prom_rss)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
