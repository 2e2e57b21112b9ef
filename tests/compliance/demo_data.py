"""A deterministic dataset shaped like PromLabs' prometheus-demo-service, as Prometheus would scrape it.

The public compliance queries expect three demo-service instances scraped every 5 s for hours. This
module generates the same metric families (memory by type, CPUs, CPU seconds by mode, disk usage, a batch
job's last success, an intermittent metric that goes stale, an API latency histogram) with what makes
PromQL results differ in practice: per-target scrape offsets and millisecond jitter (rate extrapolation),
a counter reset (a restart), staleness markers, exact bucket boundaries. Seeded: every run is identical
relative to its end time.
"""

from __future__ import annotations

import math
import random

from sotp.codec.remote_write import encode_write_request
from sotp.model import STALE_NAN, Labels

Dataset = list[tuple[Labels, list[tuple[int, float]]]]

INSTANCES = ["demo.promlabs.com:10000", "demo.promlabs.com:10001", "demo.promlabs.com:10002"]
SCRAPE_MS = 5_000
BUCKETS = ["0.0001", "0.00015", "0.0002", "0.0003", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
           "0.05", "0.1", "0.25", "+Inf"]


def generate(end_ms: int, duration_ms: int = 95 * 60_000, seed: int = 42) -> Dataset:
    """Samples from ``end_ms - duration_ms`` to ``end_ms`` (+1 min), for every demo metric and target."""
    rnd = random.Random(seed)
    out: Dataset = []
    start = end_ms - duration_ms
    n = (duration_ms + 60_000) // SCRAPE_MS
    for k, inst in enumerate(INSTANCES):
        offset = 1_237 + 1_511 * k  # each target is scraped at its own phase
        times = [start + offset + i * SCRAPE_MS + rnd.randint(-4, 4) for i in range(n)]
        restart = n // 2 + 37 * k if k == 1 else -1  # one instance restarts: counters reset
        base = {"instance": inst, "job": "demo"}

        def series(name: str, extra: dict[str, str], values: list[float], ts: list[int] = times,
                   target: dict[str, str] = base) -> None:
            out.append((Labels({"__name__": name, **target, **extra}), list(zip(ts, values, strict=True))))

        series("up", {}, [1.0] * n)
        cpus = [4.0, 8.0, 16.0][k]
        series("demo_num_cpus", {}, [cpus] * n)
        total = 16e9 * (k + 1)
        mem: dict[str, list[float]] = {t: [] for t in ("free", "used", "buffers", "cached")}
        for i in range(n):
            used = total * (0.35 + 0.15 * math.sin(i / 90 + k) + rnd.uniform(-0.01, 0.01))
            buffers = total * (0.05 + rnd.uniform(0, 0.005))
            cached = total * (0.2 + 0.05 * math.cos(i / 200))
            mem["used"].append(round(used))
            mem["buffers"].append(round(buffers))
            mem["cached"].append(round(cached))
            mem["free"].append(round(total - used - buffers - cached))
        for t, vals in mem.items():
            series("demo_memory_usage_bytes", {"type": t}, vals)
        for mode, share in (("idle", 0.6), ("system", 0.1), ("user", 0.3)):
            v, vals = 0.0, []
            for i in range(n):
                v = 0.0 if i == restart else v + cpus * 5 * share * rnd.uniform(0.8, 1.2)
                vals.append(round(v, 3))
            series("demo_cpu_usage_seconds_total", {"mode": mode}, vals)
        disk_total = 1e12
        d, disk = 1e11 * (k + 2), []
        for i in range(n):
            d = d * 0.5 if i % 400 == 399 else d + rnd.uniform(0, 4e6)
            disk.append(round(d))
        series("demo_disk_usage_bytes", {}, disk)
        series("demo_disk_total_bytes", {}, [disk_total] * n)
        last, batch = float((times[0] // 1000) - 3600), []
        for i in range(n):
            if i % 24 == 11 and rnd.random() < 0.8:  # a batch run every ~2 minutes, sometimes failing
                last = float(times[i] // 1000)
            batch.append(last)
        series("demo_batch_last_success_timestamp_seconds", {}, batch)
        # present for 3 minutes, absent for 2: a staleness marker at the first missed scrape
        inter_t, inter_v = [], []
        for i in range(n):
            phase = (i + 7 * k) % 60
            if phase < 36:
                inter_t.append(times[i])
                inter_v.append(float(i % 13))
            elif phase == 36:
                inter_t.append(times[i])
                inter_v.append(STALE_NAN)
        series("demo_intermittent_metric", {}, inter_v, inter_t)
        for method in ("GET", "POST"):
            for path in ("/api/foo", "/api/bar"):
                for status in ("200", "500"):
                    rate = (20 if status == "200" else 2) * (2 if method == "GET" else 1)
                    counts = [0.0] * len(BUCKETS)
                    cols: list[list[float]] = [[] for _ in BUCKETS]
                    total_sum, sums, cnts = 0.0, [], []
                    for i in range(n):
                        if i == restart:
                            counts = [0.0] * len(BUCKETS)
                            total_sum = 0.0
                        for _ in range(rnd.randint(0, rate)):
                            # latencies cluster on bucket bounds now and then (exact boundary hits)
                            obs = float(rnd.choice(BUCKETS[:-1])) if rnd.random() < 0.1 else rnd.lognormvariate(-6, 1.5)
                            total_sum += obs
                            for b, bound in enumerate(BUCKETS):
                                if obs <= float(bound):
                                    counts[b] += 1
                        for b in range(len(BUCKETS)):
                            cols[b].append(counts[b])
                        sums.append(round(total_sum, 6))
                        cnts.append(counts[-1])
                    lbl = {"method": method, "path": path, "status": status}
                    for bound, vals in zip(BUCKETS, cols, strict=True):
                        series("demo_api_request_duration_seconds_bucket", {**lbl, "le": bound}, vals)
                    series("demo_api_request_duration_seconds_sum", lbl, sums)
                    series("demo_api_request_duration_seconds_count", lbl, cnts)
    return out


def write_bodies(data: Dataset, window_ms: int = 300_000) -> list[bytes]:
    """Remote-write bodies in time order, one per ``window_ms`` (Prometheus refuses far older samples)."""
    lo = min(p[0][0] for _, p in data if p)
    hi = max(p[-1][0] for _, p in data if p)
    bodies = []
    t = lo
    while t <= hi:
        chunk = [(lb, [s for s in pts if t <= s[0] < t + window_ms]) for lb, pts in data]
        chunk = [(lb, pts) for lb, pts in chunk if pts]
        if chunk:
            bodies.append(encode_write_request(chunk))
        t += window_ms
    return bodies
