"""``POST /api/v1/ingest``: metrics as JSON, for scripts and ``curl`` (schema in docs/push.md).

One payload, or a JSON array of payloads (the batch form, e.g. one per host)::

    {
      "host": "web01",                      optional: becomes the label host="web01"
      "timestamp": 1700000000.5,            optional: Unix seconds or RFC 3339 ("2023-11-14T22:13:20Z");
                                            default: the time the request arrives
      "labels": {"env": "prod"},            optional: added to every series of this payload
      "metrics": {                          required
        "cpu_percent": 12.5,                name -> value
        "disk_free_bytes": [                name -> list of {labels, value[, timestamp]}
          {"labels": {"mount": "/"}, "value": 1.2e9},
          {"labels": {"mount": "/var"}, "value": 3e8, "timestamp": "2023-11-14T22:13:20Z"}
        ]
      }
    }

Values are JSON numbers or the strings ``"NaN"``, ``"+Inf"``, ``"-Inf"``. Label precedence: a sample's
``labels`` over the payload's ``labels`` over ``host``. Every error is a 400 naming the field path
(``[1].metrics.disk_free_bytes[0].labels.mount: expected a string, got number``); the whole request is
refused and nothing is written.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any, Final

from aiohttp import web

from remote_write.admission import admitted
from remote_write.body import read_body
from remote_write.limits import check_labels
from remote_write.pipeline import WRITE_METRICS, SeriesBatch, error_response, off_loop, setup_pipeline, write_batch
from sotp.config import Limits
from sotp.errors import DecodeError, LimitExceeded
from sotp.model import METRIC_NAME, Labels
from sotp.web import CTX, ServerContext, authorize, json_response

PROTOCOL: Final = "json"
PATH: Final = "/api/v1/ingest"
_PAYLOAD_KEYS: Final = frozenset({"host", "timestamp", "labels", "metrics"})
_SAMPLE_KEYS: Final = frozenset({"labels", "value", "timestamp"})
_SPECIAL: Final = {"NaN": math.nan, "+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf}
#: Largest accepted timestamp, in seconds (year 9999): beyond it milliseconds overflow int64 readers.
_MAX_T_S: Final = 253402300799.0


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _fail(path: str, reason: str) -> DecodeError:
    return DecodeError(f"{path or '$'}: {reason}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DecodeError(f"duplicate key {k!r} in a JSON object")
        out[k] = v
    return out


def _reject_constant(token: str) -> float:
    raise DecodeError(f"invalid JSON token {token}: write special values as strings \"NaN\", \"+Inf\", \"-Inf\"")


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity tokens, no duplicate keys. Raises :class:`DecodeError`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DecodeError(f"body is not UTF-8 at byte {err.start}") from None
    if not text.strip():
        raise DecodeError("empty body: send a JSON object or array (see docs/push.md)")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise DecodeError(f"invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    except RecursionError:
        raise DecodeError("invalid JSON: nested too deeply") from None


def _timestamp_ms(v: Any, path: str) -> int:
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v)
        except ValueError:
            raise _fail(path, f"{v[:64]!r} is not an RFC 3339 time (e.g. 2023-11-14T22:13:20Z)") from None
        if dt.tzinfo is None:
            raise _fail(path, f"{v[:64]!r} has no time zone: add Z or an offset like +01:00")
        secs = dt.timestamp()
    elif isinstance(v, int | float) and not isinstance(v, bool):
        secs = float(v) if abs(v) < 1e300 else math.inf
    else:
        raise _fail(path, f"expected Unix seconds (number) or an RFC 3339 string, got {_kind(v)}")
    if not math.isfinite(secs) or not 0 <= secs <= _MAX_T_S:
        raise _fail(path, f"time {v!r} is outside 1970-01-01 .. 9999-12-31 (Unix seconds expected, not ms)")
    return round(secs * 1000)


def _value(v: Any, path: str) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        try:
            return float(v)
        except OverflowError:
            raise _fail(path, "number too large for a float64") from None
    if isinstance(v, str) and v in _SPECIAL:
        return _SPECIAL[v]
    raise _fail(path, f"expected a number or \"NaN\", \"+Inf\", \"-Inf\", got {_kind(v)}")


def _labels(v: Any, path: str) -> dict[str, str]:
    if not isinstance(v, dict):
        raise _fail(path, f"expected an object of label name -> string, got {_kind(v)}")
    for name, value in v.items():
        if not isinstance(value, str):
            raise _fail(f"{path}.{name}", f"expected a string, got {_kind(value)}")
        if name == METRIC_NAME:
            raise _fail(f"{path}.{name}", "the metric name comes from the key under metrics, not from labels")
    return v


def _object(v: Any, path: str, allowed: frozenset[str], what: str) -> Mapping[str, Any]:
    if not isinstance(v, dict):
        raise _fail(path, f"expected {what} (an object), got {_kind(v)}")
    unknown = sorted(set(v) - allowed)
    if unknown:
        sub = f"{path}.{unknown[0]}" if path else unknown[0]
        raise _fail(sub, f"unknown field (allowed: {', '.join(sorted(allowed))})")
    return v


def decode_ingest(body: bytes, limits: Limits, now_ms: int | None = None) -> list[SeriesBatch]:
    """Validate a JSON ingest body into per-series batches (time-sorted). Raises on the first error."""
    doc = parse_json(body)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    payloads = doc if isinstance(doc, list) else [doc]
    batch = isinstance(doc, list)
    points: dict[Labels, dict[int, tuple[float, str]]] = {}
    for i, payload in enumerate(payloads):
        base = f"[{i}]" if batch else ""
        obj = _object(payload, base, _PAYLOAD_KEYS, "a payload")
        if "metrics" not in obj:
            raise _fail(f"{base}.metrics" if base else "metrics", "required field missing")
        common: dict[str, str] = {}
        if "host" in obj:
            host = obj["host"]
            if not isinstance(host, str) or not host:
                raise _fail(f"{base}.host" if base else "host", f"expected a non-empty string, got {_kind(host)}")
            common["host"] = host
        if "labels" in obj:
            common.update(_labels(obj["labels"], f"{base}.labels" if base else "labels"))
        t_ms = now_ms
        if "timestamp" in obj:
            t_ms = _timestamp_ms(obj["timestamp"], f"{base}.timestamp" if base else "timestamp")
        mpath = f"{base}.metrics" if base else "metrics"
        metrics = obj["metrics"]
        if not isinstance(metrics, dict):
            raise _fail(mpath, f"expected an object of metric name -> value or list, got {_kind(metrics)}")
        for name, spec in metrics.items():
            npath = f"{mpath}.{name}"
            if isinstance(spec, list):
                items = [(f"{npath}[{j}]", s) for j, s in enumerate(spec)]
            elif isinstance(spec, dict):
                items = [(npath, spec)]
            else:
                items = [(npath, {"value": spec})]
            for spath, sample in items:
                s = _object(sample, spath, _SAMPLE_KEYS, "a sample {labels, value, timestamp}")
                if "value" not in s:
                    raise _fail(f"{spath}.value", "required field missing")
                scalar = not isinstance(spec, list | dict)  # "name": 1.5 -> report the path "metrics.name"
                value = _value(s["value"], spath if scalar else f"{spath}.value")
                labels = dict(common)
                if "labels" in s:
                    labels.update(_labels(s["labels"], f"{spath}.labels"))
                labels[METRIC_NAME] = name
                series = Labels(labels)
                check_labels(series, limits, spath)
                t = _timestamp_ms(s["timestamp"], f"{spath}.timestamp") if "timestamp" in s else t_ms
                at = points.setdefault(series, {})
                if len(points) > limits.max_series_per_request:
                    raise LimitExceeded(
                        f"request has more than {limits.max_series_per_request} series "
                        "(limits.max_series_per_request)"
                    )
                prev = at.get(t)
                if prev is not None and prev[0] != value and not (math.isnan(prev[0]) and math.isnan(value)):
                    raise _fail(spath, f"series {series} has two values at time {t / 1000:g} (also at {prev[1]})")
                at[t] = (value, spath)
    return [
        SeriesBatch(series, sorted(at), [at[t][0] for t in sorted(at)]) for series, at in points.items()
    ]


async def handle_ingest(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        principal = await authorize(request, "write")
        with admitted(request):  # the slot before the body: slow senders cannot queue up reads
            body = await read_body(request, ctx.config.limits)
            batches = await off_loop(len(body), partial(decode_ingest, body, ctx.config.limits))
            written = await write_batch(request, PROTOCOL, batches, principal) if batches else 0
    except Exception as err:
        return error_response(request, PROTOCOL, err)
    request.app[WRITE_METRICS].requests.labels(PROTOCOL, "200").inc()
    samples = sum(len(b.timestamps) for b in batches)
    data = {"series": len(batches), "samples": samples, "written": written}
    return json_response({"status": "success", "data": data})


def setup(app: web.Application, ctx: ServerContext) -> None:
    """Register ``POST /api/v1/ingest``."""
    setup_pipeline(app, ctx)
    app.router.add_post(PATH, handle_ingest)
