"""The load generator shared by the storage benchmarks: remote write 1.0 the way real senders send it.

A :class:`Dataset` is ``n_series`` series over ``span_s`` at ``step_s``: counters ``c`` (half), gauges ``g``
(40 %) and histograms ``h_bucket`` (10 %, 10 ``le`` buckets each), labelled ``job`` (``job-0`` … ``job-9``)
and ``instance`` (``i-<n>``), so the dashboard query set (``sum by (job) (rate(c[5m]))``,
``rate(c{instance="i-7"}[5m])``, ``topk(5, avg_over_time(g[5m]))``, ``histogram_quantile(0.9, sum by (le)
(rate(h_bucket[5m])))``) selects 5,000 / 1 / 4,000 / 1,000 series at the default size.

A :class:`Shape` says how the samples travel. Like Prometheus's remote-write shards, each series always goes
through the same sender (series ``i`` through sender ``i % senders``), and each sender's stream is in time
order: round after round, where a round is ``samples_per_series`` consecutive samples of every series the sender
owns. The stream is cut into requests of ``series_per_request`` series. ``LIVE`` (1 sample per series, 2,000
series per request, 4 senders) is what Prometheus, vmagent and SOTP's agent deliver; ``TEN`` carries 10 samples
per series per request. :func:`encode` builds every snappy body before the clock starts; :func:`send` posts
each sender's bodies in order, senders concurrently, and counts the answers; :func:`verify` asks a Prometheus
HTTP API (``count_over_time``) whether every sample is there.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import cramjam
import numpy as np

from sotp.codec.remote_write_encoder import encode_label_fields, encode_timeseries_raw

BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf")
HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "sotp-bench-loadgen",
}
METRICS = ("c", "g", "h_bucket")


@dataclass(frozen=True)
class Dataset:
    """Series (sorted label pairs) and their samples: ``values[i, k]`` at ``ts[k]`` ms."""

    labels: list[tuple[tuple[str, str], ...]]
    ts: np.ndarray
    values: np.ndarray
    step_s: int

    @property
    def samples(self) -> int:
        return int(self.values.size)

    @property
    def end_ms(self) -> int:
        return int(self.ts[-1])

    def describe(self) -> str:
        span = (len(self.ts) - 1) * self.step_s + self.step_s
        return (f"{len(self.labels):,} series × {len(self.ts)} samples ({span // 60} min at {self.step_s} s) "
                f"= {self.samples:,} samples")


def make_dataset(n_series: int = 10_000, span_s: int = 3600, step_s: int = 15, end_ms: int | None = None,
                 seed: int = 42) -> Dataset:
    """The series of the module docstring, ending at ``end_ms`` (default: now, rounded down to the step)."""
    if end_ms is None:
        end_ms = int(time.time()) // step_s * step_s * 1000
    n = span_s // step_s
    ts = end_ms - step_s * 1000 * np.arange(n, dtype=np.int64)[::-1]
    rng = np.random.default_rng(seed)
    n_c, n_g = n_series // 2, n_series * 2 // 5
    n_h = (n_series - n_c - n_g) // len(BUCKETS)
    labels = [_labels("c", i) for i in range(n_c)] + [_labels("g", i) for i in range(n_g)]
    labels += [_labels("h_bucket", h, le) for h in range(n_h) for le in BUCKETS]
    counters = 1.0 + np.cumsum(rng.integers(0, 100, (n_c, n)), axis=1)
    gauges = np.round(50 + np.cumsum(rng.normal(0, 1, (n_g, n)), axis=1), 3)
    observed = rng.integers(0, 20, (n_h, len(BUCKETS), n))
    buckets = (1.0 + np.cumsum(np.cumsum(observed, axis=1), axis=2)).reshape(n_h * len(BUCKETS), n)
    values = np.concatenate([counters.astype(np.float64), gauges, buckets])
    return Dataset(labels, ts, values, step_s)


def _labels(name: str, i: int, le: str | None = None) -> tuple[tuple[str, str], ...]:
    pairs = [("__name__", name), ("instance", f"i-{i}"), ("job", f"job-{i % 10}")]
    if le is not None:
        pairs.append(("le", le))
    return tuple(pairs)


@dataclass(frozen=True)
class Shape:
    """How samples travel: per request, ``samples_per_series`` samples of ``series_per_request`` series."""

    samples_per_series: int = 1
    series_per_request: int = 2_000
    senders: int = 4

    def describe(self) -> str:
        return (f"{self.samples_per_series} sample(s)/series/request, {self.series_per_request:,} series/request, "
                f"{self.senders} sender(s)")


LIVE = Shape(1, 2_000, 4)
TEN = Shape(10, 2_000, 4)


@dataclass(frozen=True)
class Load:
    """Pre-encoded requests: ``shards[s]`` is sender ``s``'s (snappy body, samples in it) in send order."""

    shards: list[list[tuple[bytes, int]]]
    shape: Shape

    @property
    def samples(self) -> int:
        return sum(n for s in self.shards for _, n in s)

    @property
    def requests(self) -> int:
        return sum(len(s) for s in self.shards)

    @property
    def bytes(self) -> int:
        return sum(len(b) for s in self.shards for b, _ in s)

    def describe(self) -> str:
        return f"{self.requests:,} requests, {self.samples:,} samples, {self.bytes / 1e6:.1f} MB snappy"


def encode(data: Dataset, shape: Shape) -> Load:
    """Every request body of ``data`` sent in ``shape`` (see the module docstring for the order)."""
    n_steps = len(data.ts)
    if n_steps % shape.samples_per_series:
        raise ValueError(f"{n_steps} samples per series do not split into rounds of {shape.samples_per_series}")
    fields = [encode_label_fields(lb) for lb in data.labels]
    shards: list[list[tuple[bytes, int]]] = []
    for sender in range(shape.senders):
        owned = range(sender, len(fields), shape.senders)
        stream = _sender_stream(data, fields, owned, shape.samples_per_series)
        shards.append(_cut(stream, shape.series_per_request, shape.samples_per_series))
    return Load(shards, shape)


def _sender_stream(data: Dataset, fields: list[bytes], owned: range, k: int) -> list[bytes]:
    """One encoded ``TimeSeries`` per (round, owned series), rounds in time order."""
    out: list[bytes] = []
    for start in range(0, len(data.ts), k):
        ts = data.ts[start:start + k].tolist()
        block = data.values[owned.start:owned.stop:owned.step, start:start + k].tolist()
        out.extend(encode_timeseries_raw(fields[i], zip(ts, vs, strict=True))
                   for i, vs in zip(owned, block, strict=True))
    return out


def _cut(stream: list[bytes], per_request: int, k: int) -> list[tuple[bytes, int]]:
    return [(bytes(cramjam.snappy.compress_raw(b"".join(stream[i:i + per_request]))),
             k * len(stream[i:i + per_request])) for i in range(0, len(stream), per_request)]


@dataclass
class SendResult:
    """What one load got back: samples acknowledged (2xx), answers by status, retries, request latencies."""

    seconds: float = 0.0
    samples: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    retries: int = 0
    failed: int = 0
    first_error: str = ""
    latencies: list[float] = field(default_factory=list)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> int:
        return sum(n for code, n in self.statuses.items() if 200 <= code < 300)

    def describe(self) -> str:
        other = {code: n for code, n in self.statuses.items() if not 200 <= code < 300}
        lat = sorted(self.latencies) or [0.0]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        by_code = f" {other}" if other else ""
        text = (f"{self.samples_per_s:,.0f} samples/s ({self.samples:,} in {self.seconds:.2f} s); 2xx {self.ok}, "
                f"other {sum(other.values())}{by_code}, retries {self.retries}, failed {self.failed}; "
                f"latency p50 {statistics.median(lat) * 1000:.0f} ms p99 {p99 * 1000:.0f} ms")
        return text + (f"; first error: {self.first_error}" if self.first_error else "")


def send(url: str, load: Load, max_retries: int = 3, timeout_s: float = 120.0) -> SendResult:
    """Post ``load`` to a remote-write ``url``: each sender its bodies in order, senders concurrently.

    A 5xx, 429 or connection error is retried up to ``max_retries`` times (Prometheus retries those, with
    backoff); any other non-2xx counts as failed and the sender moves on. The clock covers the whole load.
    """
    return asyncio.run(_send(url, load, max_retries, timeout_s))


async def _send(url: str, load: Load, max_retries: int, timeout_s: float) -> SendResult:
    result = SendResult()
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=len(load.shards))
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(_sender(session, url, bodies, max_retries, result) for bodies in load.shards))
        result.seconds = time.perf_counter() - started
    return result


async def _sender(session: aiohttp.ClientSession, url: str, requests: list[tuple[bytes, int]], max_retries: int,
                  result: SendResult) -> None:
    for body, samples in requests:
        for attempt in range(max_retries + 1):
            status, error = await _post(session, url, body, result)
            if 200 <= status < 300:
                result.samples += samples
                break
            result.first_error = result.first_error or error
            if status and status != 429 and status < 500:
                result.failed += 1
                break
            if attempt == max_retries:
                result.failed += 1
                break
            result.retries += 1
            await asyncio.sleep(0.05 * 2 ** attempt)


async def _post(session: aiohttp.ClientSession, url: str, body: bytes, result: SendResult) -> tuple[int, str]:
    """One POST: (status, error text); status 0 for a connection error or timeout."""
    started = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=HEADERS) as resp:
            text = "" if 200 <= resp.status < 300 else (await resp.text())[:300]
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as err:
        status, text = 0, f"{type(err).__name__}: {err}"
    result.latencies.append(time.perf_counter() - started)
    result.statuses[status] += 1
    return status, f"{status} {text}".strip()


@dataclass(frozen=True)
class Verification:
    """Samples and series a Prometheus-compatible API reports for the dataset's window."""

    expected_samples: int
    expected_series: int
    samples: int
    series: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.samples == self.expected_samples and self.series == self.expected_series

    def describe(self) -> str:
        verdict = "every sample present" if self.ok else "MISSING OR EXTRA SAMPLES"
        return (f"{verdict}: {self.samples:,} of {self.expected_samples:,} samples, {self.series:,} of "
                f"{self.expected_series:,} series ({self.seconds:.1f} s)")


def verify(api_base: str, data: Dataset, timeout_s: float = 600.0) -> Verification:
    """``sum``/``count`` of ``count_over_time`` over the dataset's window, at its last timestamp, per metric name
    (``count_over_time`` drops the name, so ``c`` and ``g`` of one instance would collide in one vector).

    The range reaches half a step before the first sample, so it holds every sample whichever way the
    server treats the range's left edge."""
    range_s = (len(data.ts) - 1) * data.step_s + data.step_s // 2
    started = time.perf_counter()
    samples = series = 0.0
    for name in METRICS:
        inner = f"count_over_time({name}[{range_s}s])"
        samples += instant_value(api_base, f"sum({inner})", data.end_ms, timeout_s)
        series += instant_value(api_base, f"count({inner})", data.end_ms, timeout_s)
    return Verification(data.samples, len(data.labels), int(samples), int(series), time.perf_counter() - started)


def instant_value(api_base: str, query: str, t_ms: int, timeout_s: float = 600.0) -> float:
    """The single value of an instant query (0 when the result is empty)."""
    result = api_get(api_base, "/api/v1/query", {"query": query, "time": f"{t_ms / 1000:.3f}"}, timeout_s)
    assert isinstance(result, dict)
    result = result["result"]
    return float(result[0]["value"][1]) if result else 0.0


def api_get(api_base: str, path: str, params: dict[str, str], timeout_s: float = 600.0) -> object:
    """``data`` of a Prometheus HTTP API answer; an error answer raises with the server's reason."""
    url = f"{api_base}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"{api_base}: {params.get('query', path)}: {err.code} {err.read()[:300]!r}") from err
    if body.get("status") != "success":
        raise RuntimeError(f"{api_base}: {params.get('query', path)}: {body}")
    return body["data"]
