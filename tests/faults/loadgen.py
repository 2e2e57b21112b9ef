"""The fault suite's one load generator: concurrent remote-write senders that remember every acknowledged sample.

A :class:`Plan` is ``senders`` senders, each owning ``series`` series (``<metric>{sender="s", i="k"}``) and
sending ``rounds`` requests in time order, one sample of every owned series per request — the shape of a
Prometheus remote-write shard. A sender retries a request until it is acknowledged: a 5xx, 429, timeout or
connection error is retried with capped exponential backoff, each attempt on the next of the given base URLs
(round-robin, as a load balancer in front of replicas would); any other answer is recorded as a rejection and
the sender moves on (the scenarios assert there is none). Only a 2xx adds the request's samples to the
acknowledged record.

:class:`Run` drives a plan on a background thread so the test can inject its fault while requests are in flight;
:func:`read_back` fetches every series of the plan through ``/api/v1/query`` (a range selector answers the raw
samples) and :func:`compare` counts what was acknowledged but is missing (lost) or present more than once
(duplicated). :class:`Row` is one line of the table the suite prints.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from sotp.codec.remote_write import snappy_compress
from sotp.codec.remote_write_encoder import serialize_write_request

HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "sotp-fault-loadgen",
}
#: Statuses a sender retries (Prometheus's rule); 0 stands for a connection error or timeout.
RETRIED = frozenset({0, 429, 500, 502, 503, 504})
SeriesKey = tuple[str, str]  # (sender, i)


@dataclass(frozen=True)
class Plan:
    """What the senders send: ``rounds`` requests per sender of one sample per owned series, ``step_ms`` apart."""

    metric: str
    senders: int = 4
    series: int = 200
    rounds: int = 100
    step_ms: int = 1000
    start_ms: int = 0

    @staticmethod
    def recent(metric: str, senders: int = 4, series: int = 200, rounds: int = 100) -> Plan:
        """A plan whose samples end a minute ago (inside every store's accepted window)."""
        step = 1000
        start = (int(time.time()) - 60) * 1000 - rounds * step
        return Plan(metric, senders, series, rounds, step, start)

    @property
    def requests(self) -> int:
        return self.senders * self.rounds

    @property
    def samples(self) -> int:
        return self.requests * self.series

    @property
    def end_ms(self) -> int:
        return self.start_ms + (self.rounds - 1) * self.step_ms

    def value(self, sender: int, i: int, r: int) -> float:
        """A distinct, exactly printable value per sample, so a sample stored under the wrong series or time shows."""
        return float(r * 1_000_000 + sender * 10_000 + i) + 0.25

    def samples_of(self, sender: int, r: int) -> list[tuple[SeriesKey, int, float]]:
        t = self.start_ms + r * self.step_ms
        return [((str(sender), str(i)), t, self.value(sender, i, r)) for i in range(self.series)]

    def body(self, sender: int, r: int) -> bytes:
        t = self.start_ms + r * self.step_ms
        pairs = ((((("__name__", self.metric), ("i", str(i)), ("sender", str(sender)))),
                  [(t, self.value(sender, i, r))]) for i in range(self.series))
        return snappy_compress(serialize_write_request(pairs))


@dataclass
class Result:
    """What the senders saw: acknowledged requests and samples, every answer by status, rejections."""

    requests_acked: int = 0
    acked: list[tuple[SeriesKey, int, float]] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    rejected: list[str] = field(default_factory=list)
    abandoned: int = 0
    unavailable_without_retry_after: int = 0
    retries: int = 0
    failure_texts: dict[int, str] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        """Answers that were neither a 2xx nor a rejection: what the fault caused and the senders retried."""
        return sum(n for code, n in self.statuses.items() if code in RETRIED)

    def unexpected(self) -> dict[int, int]:
        """Answers other than a 2xx or a retried status (the suite asserts this is empty)."""
        return {c: n for c, n in self.statuses.items() if not 200 <= c < 300 and c not in RETRIED}


class Run:
    """``plan`` sent to ``bases`` on a background thread; :meth:`wait_acked` and :meth:`finish` synchronise."""

    def __init__(self, bases: list[str], plan: Plan, deadline_s: float = 240.0, max_backoff_s: float = 0.5,
                 path: str = "/api/v1/write", rounds: range | None = None):
        self.urls = [b + path for b in bases]
        self.plan = plan
        self.deadline_s = deadline_s
        self.max_backoff_s = max_backoff_s
        self.result = Result()
        self._lock = threading.Lock()
        self._next_url = 0
        self.rounds = rounds if rounds is not None else range(plan.rounds)
        self._bodies = [[(r, plan.body(s, r)) for r in self.rounds] for s in range(plan.senders)]
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="loadgen", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> Run:
        self._thread.start()
        return self

    def wait_acked(self, requests: int, timeout_s: float = 120.0) -> None:
        """Block until ``requests`` requests were acknowledged (the moment to inject a fault under load)."""
        deadline = time.monotonic() + timeout_s
        while self.result.requests_acked < requests:
            if not self._thread.is_alive():
                raise AssertionError(f"the load ended after {self.result.requests_acked} acknowledged requests, "
                                     f"before {requests}: make the plan larger ({self._error or 'no error'})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.result.requests_acked} of {requests} requests acknowledged "
                                   f"after {timeout_s}s; statuses so far {dict(self.result.statuses)}")
            time.sleep(0.01)

    def wait_failures(self, n: int = 1, timeout_s: float = 60.0) -> None:
        """Block until the senders saw ``n`` retried answers (the fault is visible to them)."""
        deadline = time.monotonic() + timeout_s
        while self.result.failures < n and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise TimeoutError(f"senders saw no failure within {timeout_s}s: {dict(self.result.statuses)}")
            time.sleep(0.01)

    def finish(self) -> Result:
        """Wait for every sender to deliver (or give up at the deadline) and return what they saw."""
        self._thread.join(self.deadline_s + 30)
        if self._thread.is_alive():
            raise TimeoutError(f"the senders did not finish within {self.deadline_s + 30}s")
        if self._error is not None:
            raise self._error
        return self.result

    def _url(self) -> str:
        with self._lock:
            self._next_url = (self._next_url + 1) % len(self.urls)
            return self.urls[self._next_url]

    async def _main(self) -> None:
        try:
            timeout = aiohttp.ClientTimeout(total=60)
            connector = aiohttp.TCPConnector(limit=self.plan.senders * 2)
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
                deadline = time.monotonic() + self.deadline_s
                await asyncio.gather(*(self._sender(session, s, deadline) for s in range(self.plan.senders)))
        except BaseException as err:  # surfaced by finish(): a crashed generator must fail the test
            self._error = err

    async def _sender(self, session: aiohttp.ClientSession, sender: int, deadline: float) -> None:
        res = self.result
        for r, body in self._bodies[sender]:
            backoff = 0.05
            while True:
                status, retry_after, text = await self._post(session, body)
                with self._lock:
                    res.statuses[status] += 1
                    if 200 <= status < 300:
                        res.requests_acked += 1
                        res.acked.extend(self.plan.samples_of(sender, r))
                    elif status == 503 and not retry_after:
                        res.unavailable_without_retry_after += 1
                if 200 <= status < 300:
                    break
                res.failure_texts.setdefault(status, text)
                if status not in RETRIED:
                    res.rejected.append(f"sender {sender} round {r}: {status} {text}")
                    break
                if time.monotonic() > deadline:
                    res.abandoned += 1
                    break
                res.retries += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _post(self, session: aiohttp.ClientSession, body: bytes) -> tuple[int, bool, str]:
        try:
            async with session.post(self._url(), data=body, headers=HEADERS) as resp:
                text = "" if 200 <= resp.status < 300 else (await resp.text())[:300]
                return resp.status, "Retry-After" in resp.headers, text
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            return 0, False, f"{type(err).__name__}: {err}"


def resend(bases: list[str], plan: Plan, rounds: range) -> None:
    """Send the plan's requests of ``rounds`` again, as a sender does when a 204 was lost: data already
    stored must be acknowledged again (204, never an out-of-order 400) and stay stored once, on any replica."""
    again = Run(bases, plan, rounds=rounds).start().finish()
    assert again.statuses == Counter({204: plan.senders * len(rounds)}), (
        f"a resend of stored data was answered {dict(again.statuses)}: {again.rejected[:3]}")


def read_back(base: str, plan: Plan, timeout_s: float = 120.0) -> dict[SeriesKey, list[tuple[int, float]]]:
    """Every stored sample of the plan's series, per series, as the query API returns them (one range selector
    per sender, evaluated at the last timestamp over a window that holds every round)."""
    window_s = math.ceil(plan.rounds * plan.step_ms / 1000)
    out: dict[SeriesKey, list[tuple[int, float]]] = {}
    for sender in range(plan.senders):
        expr = f'{plan.metric}{{sender="{sender}"}}[{window_s}s]'
        data = api_get(base, "/api/v1/query", {"query": expr, "time": f"{plan.end_ms / 1000:.3f}"}, timeout_s)
        assert isinstance(data, dict) and data["resultType"] == "matrix", data
        for series in data["result"]:
            key = (series["metric"]["sender"], series["metric"]["i"])
            out.setdefault(key, []).extend((round(float(t) * 1000), float(v)) for t, v in series["values"])
    return out


def api_get(base: str, path: str, params: dict[str, str], timeout_s: float = 120.0) -> object:
    """``data`` of a Prometheus HTTP API answer; an error answer raises with the server's reason."""
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"{url}: {err.code} {err.read()[:300]!r}") from err
    if body.get("status") != "success":
        raise RuntimeError(f"{url}: {body}")
    return body["data"]


@dataclass(frozen=True)
class Row:
    """One scenario's line of the fault table."""

    scenario: str
    requests_acked: int | None  # None: the sender does not report it (Prometheus)
    samples_acked: int
    samples_read: int
    lost: int
    duplicated: int
    retried: int

    HEADER = ("scenario", "requests acked", "samples acked", "samples read back", "lost", "duplicated",
              "retried answers")

    def cells(self) -> tuple[str, ...]:
        requests = "n/a" if self.requests_acked is None else f"{self.requests_acked:,}"
        return (self.scenario, requests, f"{self.samples_acked:,}", f"{self.samples_read:,}",
                str(self.lost), str(self.duplicated), f"{self.retried:,}")


def compare(scenario: str, result: Result, got: dict[SeriesKey, list[tuple[int, float]]]) -> Row:
    """Lost: acknowledged (series, t, v) not read back. Duplicated: a (series, t) read back more than once."""
    stored = Counter((key, t, v) for key, samples in got.items() for t, v in samples)
    at = Counter((key, t) for key, samples in got.items() for t, _ in samples)
    acked = set(result.acked)
    lost = sum(1 for sample in acked if stored[sample] == 0)
    duplicated = sum(n - 1 for n in at.values() if n > 1)
    return Row(scenario, result.requests_acked, len(result.acked), sum(at.values()), lost, duplicated,
               result.failures)


def format_table(rows: list[Row]) -> str:
    """A Markdown table of ``rows`` (what the suite prints and docs/reliability.md quotes)."""
    lines = [Row.HEADER, *(r.cells() for r in rows)]
    widths = [max(len(line[c]) for line in lines) for c in range(len(Row.HEADER))]
    fmt = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |" for line in lines]
    fmt.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(fmt)


#: Every row checked in this test session, in order (the suite's conftest prints them as a table).
ROWS: list[Row] = []


def check(scenario: str, result: Result, got: dict[SeriesKey, list[tuple[int, float]]]) -> Row:
    """Compare, print and record the row, then assert the suite's promise: nothing acknowledged lost or
    doubled, every request eventually acknowledged, and no answer but a 2xx or a retried failure (a 400 for
    the retry of stored data would make a real sender drop it)."""
    row = compare(scenario, result, got)
    ROWS.append(row)
    print("\n" + format_table([row]))
    assert not result.rejected, f"{scenario}: requests rejected: {result.rejected[:5]}"
    assert not result.unexpected(), f"{scenario}: unexpected answers {result.unexpected()}"
    assert result.abandoned == 0, f"{scenario}: {result.abandoned} requests never acknowledged"
    assert result.unavailable_without_retry_after == 0, f"{scenario}: 503 without Retry-After"
    assert row.lost == 0 and row.duplicated == 0, row
    assert row.samples_read == row.samples_acked, row
    return row
