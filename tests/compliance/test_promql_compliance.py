"""The public PromQL compliance suite (prometheus/compliance) against SOTP on every backend.

``tests/fixtures/promql-compliance/promql-test-queries.yml`` is the compliance tester's query set,
verbatim; its templates expand to 539 cases as the tester expands them. A deterministic demo-service
dataset (``demo_data.py``) is remote-written into Debian's Prometheus 2.42 and into ``sotp serve``
processes (SQLite, PostgreSQL), then every case runs as the tester runs it: a range query over the 10
minutes ending 12 minutes ago, 10 s resolution, compared with the tester's rules:

* the reference must fail exactly when the case says ``should_fail`` (else the runner is broken);
* SOTP must fail exactly when the reference fails (unexpected failure / unexpected success);
* otherwise the matrices (sorted by labels) must be equal: labels and timestamps exactly, values within
  a relative 1e-5 (``cmpopts.EquateApprox(0.00001, 0)``), NaN equal to NaN, infinities exactly.

Run alone: ``.venv/bin/python -m pytest tests/compliance -q``.
"""

from __future__ import annotations

import itertools
import math
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.compliance import demo_data
from tests.conftest import REPO, Proc, free_port, sotp_cmd, storage_location, wait_for_port
from tests.query import oracle_support as osup

pytestmark = pytest.mark.integration

QUERIES_FILE = REPO / "tests" / "fixtures" / "promql-compliance" / "promql-test-queries.yml"
#: The compliance tester's variant arguments (promql/testcases/expand.go).
VARIANTS = {
    "range": ["1s", "15s", "1m", "5m", "15m", "1h"],
    "offset": ["1m", "5m", "10m"],
    "simpleAggrOp": ["sum", "avg", "max", "min", "count", "stddev", "stdvar"],
    "simpleTimeAggrOp": ["sum", "avg", "max", "min", "count", "stddev", "stdvar", "absent", "last"],
    "topBottomOp": ["topk", "bottomk"],
    "quantile": ["-0.5", "0.1", "0.5", "0.75", "0.95", "0.90", "0.99", "1", "1.5"],
    "arithBinOp": ["+", "-", "*", "/", "%", "^"],
    "compBinOp": ["==", "!=", "<", ">", "<=", ">="],
    "binOp": ["+", "-", "*", "/", "%", "^", "==", "!=", "<", ">", "<=", ">="],
    "simpleMathFunc": ["abs", "ceil", "floor", "exp", "sqrt", "ln", "log2", "log10", "round"],
    "extrapolatedRateFunc": ["delta", "rate", "increase"],
    "clampFunc": ["clamp_min", "clamp_max"],
    "instantRateFunc": ["idelta", "irate"],
    "dateFunc": ["day_of_month", "day_of_week", "days_in_month", "hour", "minute", "month", "year"],
    "smoothingFactor": ["0.1", "0.5", "0.8"],
    "trendFactor": ["0.1", "0.5", "0.8"],
}
FRACTION = 0.00001
RANGE_S, STEP_S = 600, 10
BACKENDS = ["sqlite", "postgres", "timescaledb"]


def expand() -> list[tuple[str, bool, bool]]:
    """(query, should_fail, skip_comparison) for every variant, in the tester's order."""
    cases = yaml.safe_load(QUERIES_FILE.read_text())["test_cases"]
    out = []
    for c in cases:
        args = c.get("variant_args") or []
        for combo in itertools.product(*(VARIANTS[a] for a in args)):
            q = c["query"]
            for name, value in zip(args, combo, strict=True):
                q = q.replace("{{." + name + "}}", value)
            out.append((q, bool(c.get("should_fail")), bool(c.get("skip_comparison"))))
    return out


CASES = expand()


def _run_all(url: str, end_s: float) -> list[dict[str, Any]]:
    params = {"start": f"{end_s - RANGE_S:.3f}", "end": f"{end_s:.3f}", "step": str(STEP_S)}
    return [osup.http_query(url, "/api/v1/query_range", {"query": q, **params}) for q, _, _ in CASES]


def _start_serve(tmp: Path, backend: str, storage: str) -> tuple[Proc, str]:
    port = free_port()
    (tmp / "sotp.yml").write_text("limits:\n  max_body_bytes: 33554432\n")
    proc = Proc(sotp_cmd("serve", "--config", str(tmp / "sotp.yml"), "--listen", f"127.0.0.1:{port}",
                         "--storage", storage), tmp / f"serve-{backend}.log")
    wait_for_port(port, timeout=60)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[dict[str, Any]]]]:
    # the tester's default window: 10 minutes ending 12 minutes ago
    end_s = round(time.time() - 12 * 60, 3)
    data = demo_data.generate(int(end_s * 1000))
    bodies = demo_data.write_bodies(data)
    tmp = tmp_path_factory.mktemp("compliance")
    proc, url = osup.start_prometheus(tmp)
    try:
        for body in bodies:
            osup.remote_write(url, body)
        out = {"prometheus": _run_all(url, end_s)}
    finally:
        proc.stop()
    for backend in BACKENDS:
        try:
            osup.require_backend(backend)
        except pytest.skip.Exception:
            continue
        d = tmp / backend
        d.mkdir()
        with storage_location(backend, d) as storage:
            serve, surl = _start_serve(d, backend, storage)
            try:
                for body in bodies:
                    osup.remote_write(surl, body)
                out[backend] = _run_all(surl, end_s)
            finally:
                serve.stop()
    yield out


def _num(s: str) -> float:
    return float(s.replace("+Inf", "inf").replace("-Inf", "-inf"))


def _equal(a: str, b: str) -> bool:
    x, y = _num(a), _num(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return abs(x - y) <= FRACTION * min(abs(x), abs(y))


def compare(ref: dict[str, Any], got: dict[str, Any], should_fail: bool, skip: bool) -> str | None:
    """The compliance tester's verdict for one case: None when it passes, else why not."""
    ref_failed, got_failed = ref.get("status") != "success", got.get("status") != "success"
    assert ref_failed == should_fail, f"the reference itself {'failed' if ref_failed else 'succeeded'}: {ref}"
    if got_failed != should_fail:
        return f"unexpected failure: {got.get('error')}" if got_failed else "unexpected success"
    if skip or should_fail:
        return None
    rd, gd = ref["data"], got["data"]
    if rd["resultType"] != gd["resultType"]:
        return f"result type {gd['resultType']}, want {rd['resultType']}"

    def key(s: dict[str, Any]) -> list[tuple[str, str]]:
        return sorted(s["metric"].items())

    rs, gs = sorted(rd["result"], key=key), sorted(gd["result"], key=key)
    if [key(s) for s in rs] != [key(s) for s in gs]:
        return f"series {[dict(key(s)) for s in gs][:5]}, want {[dict(key(s)) for s in rs][:5]}"
    for r, g in zip(rs, gs, strict=True):
        rt, gt = [p[0] for p in r["values"]], [p[0] for p in g["values"]]
        if rt != gt:
            return f"{r['metric']}: timestamps differ (missing {sorted(set(rt) - set(gt))[:3]}, " \
                   f"extra {sorted(set(gt) - set(rt))[:3]})"
        for (t, rv), (_, gv) in zip(r["values"], g["values"], strict=True):
            if not _equal(rv, gv):
                return f"{r['metric']} at {t}: {gv}, want {rv}"
    return None


def test_reference_has_the_data(answers: dict[str, list[dict[str, Any]]]) -> None:
    """Guard against a vacuous run: Prometheus answered most cases with series."""
    ref = answers["prometheus"]
    full = [a for a in ref if a.get("status") == "success" and a["data"]["result"]]
    assert len(CASES) == 539 and len(full) > 450, (len(CASES), len(full))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{n}:{c[0]}" for n, c in enumerate(CASES)])
def test_compliance(answers: dict[str, list[dict[str, Any]]], backend: str, i: int) -> None:
    if backend not in answers:
        osup.require_backend(backend)
    q, should_fail, skip = CASES[i]
    problem = compare(answers["prometheus"][i], answers[backend][i], should_fail, skip)
    assert problem is None, f"{q}: {problem}"


def test_runner_catches_a_difference() -> None:
    """The comparison is not vacuous: a last-digit flip within 1e-5 passes, a bucket off does not."""
    ok = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"a": "1"}, "values": [[1, "0.0292"], [2, "NaN"], [3, "+Inf"]]}]}}
    near = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"a": "1"}, "values": [[1, "0.02920000001"], [2, "NaN"], [3, "+Inf"]]}]}}
    off = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"a": "1"}, "values": [[1, "0.0195"], [2, "NaN"], [3, "+Inf"]]}]}}
    assert compare(ok, near, False, False) is None
    assert compare(ok, off, False, False) is not None
    assert compare(ok, {"status": "error", "error": "x"}, False, False) == "unexpected failure: x"
    _ = urllib.request  # (the HTTP client of the runner lives in oracle_support)
