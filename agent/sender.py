"""One remote-write request and what its answer means: sent, retry later, or rejected for good."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import Enum

from agent import http

log = logging.getLogger("agent.sender")

USER_AGENT = "sotp-agent/0.1.0"


class Result(Enum):
    SENT = "sent"
    RETRY = "retry"  # 5xx, 429, 3xx, connection errors: keep the batch, back off
    REJECTED = "rejected"  # any other 4xx: the receiver will never accept this batch


@dataclass(slots=True)
class Outcome:
    result: Result
    status: int | None  # None: no HTTP answer (connection refused, timeout...)
    reason: str
    retry_after: float | None = None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    import email.utils  # only for the rare HTTP-date form; the module tree costs ~2 MB of RSS

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Sender:
    def __init__(self, url: str, token: str | None, timeout: float, ca_file: str | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.ca_file = ca_file
        self.headers = {
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "snappy",
            "User-Agent": USER_AGENT,
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        }
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def send(self, body: bytes) -> Outcome:
        try:
            r = http.post(self.url, body, self.headers, self.timeout, self.ca_file)
        except OSError as err:
            return Outcome(Result.RETRY, None, str(err))
        reason = r.body[:512].decode("utf-8", "replace").strip() or r.reason
        if 200 <= r.status < 300:
            return Outcome(Result.SENT, r.status, reason)
        if r.status == 429 or r.status >= 500 or r.status < 400:
            return Outcome(Result.RETRY, r.status, reason, parse_retry_after(r.headers.get("retry-after")))
        return Outcome(Result.REJECTED, r.status, reason)
