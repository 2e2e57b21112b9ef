"""The scripts' own expectations, checked against Debian's Prometheus 2.42.

The expected values in ``*.test`` were written by hand; this test proves them right by running every
``eval`` of every script against a real Prometheus holding the same ``load`` data (one fresh TSDB per
``clear`` segment, loaded by remote write in time order). It is the same check the SOTP runner uses,
fed with Prometheus's HTTP answers.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from query.engine import MatrixValue, QueryResult
from query.values import Scalar, Vector
from sotp.codec.remote_write import encode_write_request
from sotp.model import Labels
from tests.promql.promqltest import Clear, Command, Eval, Load, check, load_file
from tests.query import oracle_support as osup

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
SCRIPTS = sorted(HERE.glob("*.test"))


def _segments(cmds: list[Command]) -> list[list[Command]]:
    out: list[list[Command]] = [[]]
    for c in cmds:
        if isinstance(c, Clear):
            out.append([])
        else:
            out[-1].append(c)
    return out


def _num(s: str) -> float:
    return float(s.replace("+Inf", "inf").replace("-Inf", "-inf"))


def _to_result(ev: Eval, body: dict[str, Any]) -> QueryResult:
    data = body["data"]
    kind = data["resultType"]
    if ev.is_range:
        steps = np.arange(ev.start_ms, ev.end_ms + 1, ev.step_ms, dtype=np.int64)
    else:
        steps = np.array([ev.start_ms], dtype=np.int64)
    index = {int(t): j for j, t in enumerate(steps)}
    if kind == "scalar":
        return QueryResult(Scalar(np.array([_num(data["result"][1])])), steps, False)
    if kind == "matrix" and not ev.is_range:
        labels = [Labels(r["metric"]) for r in data["result"]]
        ts = [np.array([round(p[0] * 1000) for p in r["values"]], dtype=np.int64) for r in data["result"]]
        vs = [np.array([_num(p[1]) for p in r["values"]]) for r in data["result"]]
        return QueryResult(MatrixValue(labels, ts, vs), steps, False)
    rows = data["result"]
    values = np.zeros((len(rows), len(steps)))
    present = np.zeros((len(rows), len(steps)), dtype=bool)
    for i, r in enumerate(rows):
        for p in r["values"] if kind == "matrix" else [r["value"]]:
            j = index[round(p[0] * 1000)]
            values[i, j] = _num(p[1])
            present[i, j] = True
    vec = Vector([Labels(r["metric"]) for r in rows], values, present)
    vec.ordered = True
    return QueryResult(vec, steps, ev.is_range)


def _prometheus_results(path: Path, tmp: Path) -> dict[int, str | None]:
    results: dict[int, str | None] = {}
    for n, seg in enumerate(_segments(load_file(path))):
        evals = [c for c in seg if isinstance(c, Eval)]
        if not evals:
            continue
        d = tmp / f"{path.stem}-{n}"
        d.mkdir()
        proc, url = osup.start_prometheus(d)
        try:
            samples: dict[Labels, list[tuple[int, float]]] = {}
            for c in seg:
                if isinstance(c, Load):
                    for lb, vals in c.series:
                        pts = samples.setdefault(lb, [])
                        pts.extend((i * c.interval_ms, v) for i, v in enumerate(vals) if v is not None)
            if samples:
                osup.remote_write(url, encode_write_request([(lb, sorted(p)) for lb, p in samples.items()]))
            for ev in evals:
                if ev.is_range:
                    params = {"query": ev.expr, "start": str(ev.start_ms / 1000), "end": str(ev.end_ms / 1000),
                              "step": str(ev.step_ms / 1000)}
                    body = osup.http_query(url, "/api/v1/query_range", params)
                else:
                    body = osup.http_query(url, "/api/v1/query", {"query": ev.expr, "time": str(ev.start_ms / 1000)})
                if body.get("status") != "success":
                    results[ev.line] = None if ev.fail else f"prometheus error: {body.get('error')}"
                elif ev.fail:
                    results[ev.line] = "prometheus answered, the script expects an error"
                elif body["data"]["resultType"] == "string":
                    results[ev.line] = "string result"
                else:
                    results[ev.line] = check(ev, _to_result(ev, body))
        finally:
            proc.stop()
    return results


_cache: dict[str, dict[int, str | None]] = {}
CASES = [(p, c) for p in SCRIPTS for c in load_file(p) if isinstance(c, Eval)]


@pytest.mark.parametrize(("path", "ev"), CASES, ids=[f"{p.name}:{e.line}" for p, e in CASES])
def test_expectation_matches_prometheus(path: Path, ev: Eval, tmp_path_factory: pytest.TempPathFactory) -> None:
    if path.name not in _cache:
        _cache[path.name] = _prometheus_results(path, tmp_path_factory.mktemp(path.stem))
    problem = _cache[path.name][ev.line]
    assert problem is None, f"{path.name}:{ev.line} {ev.title} {urllib.parse.quote(ev.expr)}: {problem}"
