"""A small client for the Prometheus HTTP API v1: the only way the dashboards read data.

It speaks to SOTP's ``sotp serve`` and to a real Prometheus alike, the way Grafana does: ``query`` and
``query_range`` as form POSTs, discovery endpoints as GETs. Every failure becomes one :class:`APIError`
whose text is what the API said (``bad_data: ...``) or, when the API could not be reached, what to
check. Nothing here imports Streamlit, so it is tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

__all__ = ["APIError", "InstantResult", "PromClient", "RangeSeries", "VectorSample"]

#: Prometheus prints these specials as JSON strings; ``float()`` already reads them, this keeps the list
#: in one place for readers ("+Inf", "-Inf", "NaN").
_SPECIALS = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}


class APIError(Exception):
    """A request to the Prometheus HTTP API failed.

    ``error_type`` is Prometheus's ``errorType`` (``bad_data``, ``execution``, ``timeout``...) when the API
    answered with its error envelope, ``None`` for transport problems (refused connection, not JSON).
    ``str(err)`` is ``"<errorType>: <error>"`` as Grafana shows it, or the transport message.
    """

    def __init__(self, message: str, error_type: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.status = status

    def __str__(self) -> str:
        text = f"{self.error_type}: {self.message}" if self.error_type else self.message
        if self.status in (401, 403) and self.error_type:
            # The API's words come first, unchanged; the dashboard adds how to give it a token.
            text += f" (HTTP {self.status}: start the dashboard with --token-file FILE holding a read-scope token)"
        return text


@dataclass(frozen=True)
class VectorSample:
    """One element of an instant vector: the series' labels, its value and the evaluation time (s)."""

    labels: dict[str, str]
    value: float
    t: float


@dataclass(frozen=True)
class RangeSeries:
    """One series of a range-query matrix: timestamps in seconds and float values, same length."""

    labels: dict[str, str]
    ts: list[float]
    values: list[float]


@dataclass(frozen=True)
class InstantResult:
    """An instant query's answer; scalars and strings come back as one sample with empty labels."""

    result_type: str
    samples: list[VectorSample]
    warnings: list[str] = field(default_factory=list)


def _float(text: str) -> float:
    special = _SPECIALS.get(text)
    return special if special is not None else float(text)


class PromClient:
    """Reads one Prometheus-compatible API at ``base_url`` (e.g. ``http://127.0.0.1:9201``).

    ``token`` is sent as ``Authorization: Bearer <token>`` (SOTP's read scope). ``timeout`` is the
    per-request limit in seconds. Instances are cheap; they keep one ``requests.Session``.
    """

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        #: Warnings returned by the last request (``warnings`` key of the envelope), for display.
        self.last_warnings: list[str] = []

    # -- transport ---------------------------------------------------------------------------------

    def _call(self, method: str, path: str, params: Sequence[tuple[str, str]]) -> Any:
        url = f"{self.base_url}{path}"
        try:
            if method == "POST":
                resp = self.session.post(url, data=list(params), timeout=self.timeout)
            else:
                resp = self.session.get(url, params=list(params), timeout=self.timeout)
        except requests.Timeout as err:
            raise APIError(f"no answer from {url} within {self.timeout:g}s; is the API overloaded?") from err
        except requests.RequestException as err:
            raise APIError(
                f"cannot reach the API at {self.base_url} ({type(err).__name__}); start it with `sotp up` or "
                f"`sotp serve`, or point the dashboard elsewhere with `sotp dashboard --api URL`"
            ) from err
        try:
            body = resp.json()
        except ValueError:
            snippet = resp.text.strip().replace("\n", " ")[:200]
            hint = " (is the token right? pass --token-file)" if resp.status_code in (401, 403) else ""
            raise APIError(
                f"{url} answered HTTP {resp.status_code} without a Prometheus JSON envelope{hint}: {snippet!r}",
                status=resp.status_code,
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            if isinstance(body, dict) and "error" in body:
                raise APIError(str(body["error"]), str(body.get("errorType") or "error"), resp.status_code)
            raise APIError(f"{url} answered HTTP {resp.status_code} with an unexpected body", status=resp.status_code)
        self.last_warnings = [str(w) for w in body.get("warnings") or []]
        return body.get("data")

    @staticmethod
    def _window(start: float | None, end: float | None) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if start is not None:
            out.append(("start", f"{start:.3f}"))
        if end is not None:
            out.append(("end", f"{end:.3f}"))
        return out

    # -- queries -----------------------------------------------------------------------------------

    def query(self, expr: str, time: float | None = None) -> InstantResult:
        """``/api/v1/query``: evaluate ``expr`` at ``time`` (seconds; the server's now when ``None``)."""
        params = [("query", expr)] + ([("time", f"{time:.3f}")] if time is not None else [])
        data = self._call("POST", "/api/v1/query", params)
        kind = str(data.get("resultType"))
        result = data.get("result")
        if kind in ("scalar", "string"):
            t, v = result
            value = _float(v) if kind == "scalar" else math.nan
            return InstantResult(kind, [VectorSample({}, value, float(t))], self.last_warnings)
        if kind == "matrix":
            # A range selector at top level (``up[5m]``): keep each series' newest point so callers can
            # still show something; the Explorer charts matrices through query_range instead.
            samples = [
                VectorSample(dict(s["metric"]), _float(s["values"][-1][1]), float(s["values"][-1][0]))
                for s in result
                if s.get("values")
            ]
            return InstantResult(kind, samples, self.last_warnings)
        samples = [VectorSample(dict(s["metric"]), _float(s["value"][1]), float(s["value"][0])) for s in result]
        return InstantResult(kind, samples, self.last_warnings)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[RangeSeries]:
        """``/api/v1/query_range`` from ``start`` to ``end`` (seconds) every ``step`` seconds."""
        params = [("query", expr), *self._window(start, end), ("step", f"{step:g}")]
        data = self._call("POST", "/api/v1/query_range", params)
        if data.get("resultType") != "matrix":
            raise APIError(f"query_range returned {data.get('resultType')!r}, expected a matrix")
        return [
            RangeSeries(
                dict(s["metric"]),
                [float(t) for t, _ in s["values"]],
                [_float(v) for _, v in s["values"]],
            )
            for s in data["result"]
        ]

    # -- discovery ---------------------------------------------------------------------------------

    def series(
        self, matchers: Sequence[str], start: float | None = None, end: float | None = None
    ) -> list[dict[str, str]]:
        """``/api/v1/series``: the label sets matching any of ``matchers`` in the window."""
        params = [("match[]", m) for m in matchers] + self._window(start, end)
        data = self._call("GET", "/api/v1/series", params)
        return [dict(s) for s in data]

    def labels(self, matchers: Sequence[str] = (), start: float | None = None, end: float | None = None) -> list[str]:
        """``/api/v1/labels``: label names, optionally only of series matching ``matchers``."""
        params = [("match[]", m) for m in matchers] + self._window(start, end)
        return [str(x) for x in self._call("GET", "/api/v1/labels", params)]

    def label_values(
        self, name: str, matchers: Sequence[str] = (), start: float | None = None, end: float | None = None
    ) -> list[str]:
        """``/api/v1/label/<name>/values`` (GET only, as in Prometheus), sorted."""
        params = [("match[]", m) for m in matchers] + self._window(start, end)
        return sorted(str(x) for x in self._call("GET", f"/api/v1/label/{name}/values", params))

    # -- rules and alerts --------------------------------------------------------------------------

    def alerts(self) -> list[dict[str, Any]]:
        """``/api/v1/alerts``: pending and firing alerts (``labels``, ``annotations``, ``state``, ``activeAt``)."""
        data = self._call("GET", "/api/v1/alerts", [])
        return [dict(a) for a in data.get("alerts") or []]

    def rule_groups(self, kind: str = "") -> list[dict[str, Any]]:
        """``/api/v1/rules`` (``kind`` ``alert`` or ``record`` narrows it): the rule groups."""
        data = self._call("GET", "/api/v1/rules", [("type", kind)] if kind else [])
        return [dict(g) for g in data.get("groups") or []]

    def buildinfo(self) -> dict[str, Any]:
        """``/api/v1/status/buildinfo``; an empty dict when the server does not implement it."""
        try:
            data = self._call("GET", "/api/v1/status/buildinfo", [])
        except APIError as err:
            if err.status == 404:
                return {}
            raise
        return dict(data) if isinstance(data, dict) else {}
