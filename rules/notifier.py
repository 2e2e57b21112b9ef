"""Alerts to Alertmanager's v2 API, as Prometheus 2.42's notifier sends them.

Alerting rules hand over the alerts that need sending (firing ones every ``resend_delay``, resolved ones
once); the notifier adds the external labels an alert does not already have, queues them (10,000 at most,
oldest dropped first) and posts batches of up to 64 to every configured Alertmanager concurrently.
``startsAt`` is when the alert started firing, ``endsAt`` its resolution time or, while it fires, a
validity horizon of four resend/evaluation intervals, so Alertmanager resolves it by itself if the ruler
stops. A failed post is logged and counted; the alerts are sent again at the next resend.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rules.config import AlertmanagerConfig
from rules.evaluation import Alert
from sotp.config import parse_duration

log = logging.getLogger("rules.notifier")

QUEUE_CAPACITY = 10_000
MAX_BATCH = 64


def rfc3339_ms(t_ms: int) -> str:
    """Go's strfmt.DateTime layout: ``2006-01-02T15:04:05.000Z``."""
    dt = datetime.fromtimestamp(t_ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t_ms % 1000:03d}Z"


def table_link(expr: str) -> str:
    return f"/graph?g0.expr={urllib.parse.quote_plus(expr, safe='')}&g0.tab=1"


def to_payload(
    alerts: list[Alert], expr: str, external_url: str, external_labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Alerts as Alertmanager's ``PostableAlerts``."""
    out = []
    for a in alerts:
        labels = dict(a.labels.items_tuple())
        for k, v in external_labels.items():
            if not labels.get(k):
                labels[k] = v
        ends = a.resolved_at if a.resolved_at else a.valid_until
        out.append({
            "labels": labels,
            "annotations": dict(a.annotations),
            "startsAt": rfc3339_ms(a.fired_at),
            "endsAt": rfc3339_ms(ends),
            "generatorURL": external_url.rstrip("/") + table_link(expr),
        })
    return out


@dataclass
class NotifierStats:
    sent: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    dropped: int = 0


class Notifier:
    """Queues alerts and posts them to every Alertmanager; :meth:`run` is the sending task."""

    def __init__(self, alertmanagers: list[AlertmanagerConfig], external_labels: Mapping[str, str],
                 external_url: str) -> None:
        self.targets: list[tuple[str, float, dict[str, str]]] = []
        for i, am in enumerate(alertmanagers):
            timeout = parse_duration(am.timeout, f"alerting.alertmanagers[{i}].timeout")
            headers = am.headers(f"alerting.alertmanagers[{i}]")
            for url in am.urls():
                self.targets.append((url, timeout, headers))
        self.external_labels = dict(external_labels)
        self.external_url = external_url
        self.queue: list[dict[str, Any]] = []
        self.stats = NotifierStats()
        self._wake = asyncio.Event()
        self._session: Any = None

    def send(self, expr: str, alerts: list[Alert]) -> None:
        """Queue alerts for sending (never blocks; drops the oldest when the queue is full)."""
        if not self.targets or not alerts:
            return
        payload = to_payload(alerts, expr, self.external_url, self.external_labels)
        if len(payload) > QUEUE_CAPACITY:
            self.stats.dropped += len(payload) - QUEUE_CAPACITY
            payload = payload[-QUEUE_CAPACITY:]
        over = len(self.queue) + len(payload) - QUEUE_CAPACITY
        if over > 0:
            log.warning("alert notification queue full, dropping %d alerts", over)
            self.stats.dropped += over
            self.queue = self.queue[over:]
        self.queue.extend(payload)
        self._wake.set()

    async def run(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            self._session = session
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self.queue:
                    batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
                    await self._send_all(session, batch)

    async def flush(self) -> None:
        """Send everything queued now (tests and shutdown)."""
        import aiohttp

        async with aiohttp.ClientSession() as session:
            while self.queue:
                batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
                await self._send_all(session, batch)

    async def _send_all(self, session: Any, batch: list[dict[str, Any]]) -> None:
        body = json.dumps(batch, separators=(",", ":")).encode()
        await asyncio.gather(*(self._send_one(session, url, timeout, headers, body, len(batch))
                               for url, timeout, headers in self.targets))

    async def _send_one(self, session: Any, url: str, timeout: float, headers: dict[str, str], body: bytes,
                        n: int) -> None:
        import aiohttp

        try:
            async with session.post(
                url, data=body, timeout=aiohttp.ClientTimeout(total=timeout),
                headers={"Content-Type": "application/json", "User-Agent": "SOTP-ruler", **headers},
            ) as resp:
                if resp.status // 100 != 2:
                    text = (await resp.text())[:200]
                    raise RuntimeError(f"bad response status {resp.status}: {text}")
            self.stats.sent[url] = self.stats.sent.get(url, 0) + n
        except (aiohttp.ClientError, TimeoutError, RuntimeError) as err:
            self.stats.errors[url] = self.stats.errors.get(url, 0) + n
            log.error("error sending %d alerts to Alertmanager %s: %s", n, url, err)
