"""Shared by the oracle tests: a generated dataset, a real Prometheus 2.42 holding it, result comparison."""

from __future__ import annotations

import json
import math
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sotp.codec.remote_write import encode_write_request
from sotp.model import STALE_NAN, Labels
from tests.conftest import Proc, free_port, require_binary

if TYPE_CHECKING:
    from sotp.storage import Storage

#: Start of the dataset (ms), a whole minute; the data covers one hour at a 15 s interval.
T0 = 1_699_999_200_000
STEP = 15_000
N = 240

Dataset = list[tuple[Labels, list[tuple[int, float]]]]


def dataset(seed: int = 7) -> Dataset:
    """Counters with resets and gaps, gauges (one ending in a staleness marker), a histogram, ``up``."""
    rnd = random.Random(seed)
    out: Dataset = []

    def times(jitter: bool) -> list[int]:
        return [T0 + i * STEP + (rnd.randint(-700, 700) if jitter and i > 0 else 0) for i in range(N)]

    for job in ("api", "db"):
        for inst in ("i1", "i2", "i3"):
            for method in ("get", "post"):
                ts = times(jitter=inst != "i1")
                v, vals = 0.0, []
                reset_at = rnd.randint(40, 200) if method == "post" else -1
                for i in range(N):
                    v = 0.0 if i == reset_at else v + rnd.randint(0, 30) + rnd.random()
                    vals.append(round(v, 3))
                pts = list(zip(ts, vals, strict=True))
                if inst == "i3":  # a gap longer than the 5 m lookback
                    pts = pts[:100] + pts[130:]
                lb = Labels({"__name__": "http_requests_total", "job": job, "instance": inst, "method": method})
                out.append((lb, pts))
            g, gv = rnd.uniform(-5, 30), []
            for _ in range(N):
                g += rnd.gauss(0, 1.5)
                gv.append(round(g, 4))
            gpts = list(zip(times(jitter=False), gv, strict=True))
            if job == "db" and inst == "i2":  # the series ends with a staleness marker
                gpts = [*gpts[:200], (gpts[200][0], STALE_NAN)]
            out.append((Labels({"__name__": "temp", "job": job, "instance": inst}), gpts))
            other = [(t, round(v * 2 + 1, 4)) for t, v in gpts if not math.isnan(v)]
            out.append((Labels({"__name__": "other_metric", "job": job, "instance": inst}), other[::2]))
            up = [(t, 0.0 if 60 <= i < 80 and inst == "i2" else 1.0) for i, t in enumerate(times(False))]
            out.append((Labels({"__name__": "up", "job": job, "instance": inst}), up))
        bounds = ["0.1", "0.5", "1", "2.5", "+Inf"]
        counts = [0.0] * len(bounds)
        series: list[list[tuple[int, float]]] = [[] for _ in bounds]
        total, total_sum = [], 0.0
        for i, t in enumerate(times(False)):
            obs = [rnd.expovariate(1.5) for _ in range(rnd.randint(0, 12))]
            for o in obs:
                for b, bound in enumerate(bounds):
                    if o <= float(bound):
                        counts[b] += 1
                total_sum += o
            for b in range(len(bounds)):
                series[b].append((t, counts[b]))
            total.append((t, counts[-1]))
            _ = i
        for bound, pts in zip(bounds, series, strict=True):
            out.append((Labels({"__name__": "req_duration_seconds_bucket", "job": job, "le": bound}), pts))
        out.append((Labels({"__name__": "req_duration_seconds_count", "job": job}), total))
    return out


def write_batches(data: Dataset, steps_per_batch: int = 20) -> list[bytes]:
    """Remote-write bodies in time order (Prometheus rejects samples far older than its newest)."""
    bodies = []
    for start in range(0, N, steps_per_batch):
        lo, hi = T0 + start * STEP - STEP // 2, T0 + (start + steps_per_batch) * STEP - STEP // 2
        chunk = [(lb, [p for p in pts if lo <= p[0] < hi]) for lb, pts in data]
        bodies.append(encode_write_request([(lb, pts) for lb, pts in chunk if pts]))
    return bodies


def start_prometheus(tmp: Path) -> tuple[Proc, str]:
    """Debian's Prometheus with the remote-write receiver, empty TSDB, default lookback and interval."""
    binary = require_binary("prometheus", "/usr/bin/prometheus")
    port = free_port()
    (tmp / "prometheus.yml").write_text("global:\n  evaluation_interval: 1m\n")
    proc = Proc(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver"],
        tmp / "prometheus.log", cwd=tmp,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline or proc.popen.poll() is not None:
                proc.stop()
                raise AssertionError(f"prometheus did not become ready: {proc.output()[-2000:]}") from None
            time.sleep(0.1)
    return proc, url


def remote_write(url: str, body: bytes) -> None:
    req = urllib.request.Request(
        f"{url}/api/v1/write", data=body, method="POST",
        headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                 "X-Prometheus-Remote-Write-Version": "0.1.0"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status in (200, 204), r.status


def http_query(url: str, path: str, params: dict[str, str]) -> dict[str, Any]:
    """GET an API endpoint; error bodies are returned too (with ``_http`` = status)."""
    full = f"{url}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(full, timeout=30) as r:
            body: dict[str, Any] = json.load(r)
            body["_http"] = r.status
    except urllib.error.HTTPError as err:
        body = json.loads(err.read() or b"{}")
        body["_http"] = err.code
    return body


# ---- comparison ----------------------------------------------------------------------------------
REL_TOL = 1e-9


def _num(s: str) -> float:
    return float(s.replace("+Inf", "inf").replace("-Inf", "-inf"))


def _close(a: str, b: str) -> bool:
    x, y = _num(a), _num(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return math.isclose(x, y, rel_tol=REL_TOL, abs_tol=1e-12)


def _key(metric: dict[str, str]) -> str:
    return json.dumps(metric, sort_keys=True)


def diff(expected: dict[str, Any], got: dict[str, Any], ordered: bool = False) -> str | None:
    """Why two API answers differ (None when equal within tolerance)."""
    if expected.get("status") != got.get("status"):
        return f"status: want {expected.get('status')} {expected.get('error', '')!r}, got {got.get('status')} " \
               f"{got.get('error', '')!r}"
    if expected["status"] != "success":
        if expected.get("errorType") != got.get("errorType") or expected["_http"] != got["_http"]:
            return f"error: want {expected.get('errorType')}/{expected['_http']}, got " \
                   f"{got.get('errorType')}/{got['_http']} ({got.get('error')})"
        return None
    e, g = expected["data"], got["data"]
    if not isinstance(e, dict) or "resultType" not in e:  # discovery endpoints: plain lists
        return None if e == g else f"data: want {e}, got {g}"
    if e["resultType"] != g["resultType"]:
        return f"resultType: want {e['resultType']}, got {g['resultType']}"
    kind = e["resultType"]
    if kind in ("scalar", "string"):
        ok = e["result"][0] == g["result"][0] and (
            _close(e["result"][1], g["result"][1]) if kind == "scalar" else e["result"][1] == g["result"][1])
        return None if ok else f"{kind}: want {e['result']}, got {g['result']}"
    field = "value" if kind == "vector" else "values"
    if ordered:
        ev = [x[field][1] for x in e["result"]]
        gv = [x[field][1] for x in g["result"]]
        if len(ev) != len(gv) or not all(_close(a, b) for a, b in zip(ev, gv, strict=True)):
            return f"order: want {ev}, got {gv}"
    em = {_key(x["metric"]): x[field] for x in e["result"]}
    gm = {_key(x["metric"]): x[field] for x in g["result"]}
    if len(em) != len(e["result"]) or len(gm) != len(g["result"]):
        return "duplicate label sets in a result"
    if em.keys() != gm.keys():
        return f"series: missing {sorted(em.keys() - gm.keys())}, unexpected {sorted(gm.keys() - em.keys())}"
    for k, ev in em.items():
        gv = gm[k]
        pts_e = [ev] if kind == "vector" else ev
        pts_g = [gv] if kind == "vector" else gv
        if len(pts_e) != len(pts_g):
            te = [p[0] for p in pts_e]
            tg = [p[0] for p in pts_g]
            return f"{k}: {len(pts_e)} points wanted, got {len(pts_g)}; missing {sorted(set(te) - set(tg))[:5]} " \
                   f"extra {sorted(set(tg) - set(te))[:5]}"
        for pe, pg in zip(pts_e, pts_g, strict=True):
            if pe[0] != pg[0] or not _close(pe[1], pg[1]):
                return f"{k}: want {pe}, got {pg}"
    return None


# ---- SOTP over HTTP on any backend ---------------------------------------------------------------------
#: Backends the oracles run on; PostgreSQL needs SOTP_TEST_PG_DSN's server, TimescaleDB
#: SOTP_TEST_TIMESCALE_DSN's (skip locally, fail in CI).
ORACLE_BACKENDS = ["memory", "sqlite", "postgres", "timescaledb"]

Case = tuple[str, dict[str, str]]  # (API path, parameters)


def require_backend(backend: str) -> None:
    """Skip (locally) or fail (CI) when a backend's server is missing."""
    from tests.conftest import backend_dsn

    if backend in ("postgres", "timescaledb"):
        backend_dsn(backend)


async def sotp_answers(backend: str, tmp: Path, data: Dataset, cases: list[Case]) -> list[dict[str, Any]]:
    """Load ``data`` into a fresh SOTP store of ``backend`` and answer every case over HTTP."""
    from sotp.storage import open_storage
    from tests.conftest import storage_location

    with storage_location(backend, tmp) as url:
        return await _answers(open_storage(url), data, cases)


async def _answers(storage: Storage, data: Dataset, cases: list[Case]) -> list[dict[str, Any]]:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from query.api import setup
    from sotp.config import Config
    from sotp.web import CTX, ServerContext

    await storage.open()
    try:
        app_ = storage.appender()
        for lb, pts in data:
            app_.append_series(lb, [t for t, _ in pts], [v for _, v in pts])
        await app_.commit()
        ctx = ServerContext(config=Config(), storage=storage)
        app = web.Application()
        app[CTX] = ctx
        setup(app, ctx)
        out = []
        async with TestClient(TestServer(app)) as client:
            for path, params in cases:
                r = await client.get(path, params=params)
                body = json.loads(await r.text())
                body["_http"] = r.status
                out.append(body)
        return out
    finally:
        await storage.close()
