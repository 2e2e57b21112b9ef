"""Parse errors carry Prometheus's ``line:col`` prefix, so Grafana users see where their query is wrong.

promql-parser reports no positions; SOTP derives them (``query/lex.py``). Each query here is sent to
Debian's Prometheus 2.42 and to SOTP; the position prefix of the two error messages must be equal.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from tests.query import oracle_support as osup

pytestmark = pytest.mark.integration

BAD = [
    "sum(", "foo{", "rate(x[5m]", "x +", "1 +* 2", 'foo{a="b"', "sum by (job) (x", "x[5m", "x @ ", "x offset",
    "unknown(x)", "foo bar", '"abc', "x[5m:1m", "sum(x) by", "x)", "((x)", "x]", "  sum(x) +  ",
    "sum(rate(x[5m])) by (job) / on(job) group_left sum(y", "a +\nb +", "rate(x[5m])\n  / \n sum(", "x y z",
    "sum(rate(x[5m]) by (job)", 'label_replace(x, "a", "b", "c", "d"', "up == on(job) group_left(", "1 + (2",
    "rate(foo[5m] offset)", "abs(x) abs(y)", "x{a=\"b\"} 5", "foo(bar)", "sum(x) / nope(y)", "(x))",
    "holt_winters(x[5m], 0.5, 0.5", "holt_winters(x[5m], 0.5, 0.5) (",
]
POSITION = re.compile(r'^invalid parameter "query": (\d+:\d+): parse error')


def _position(body: dict[str, Any]) -> str | None:
    m = POSITION.match(body.get("error", ""))
    return m.group(1) if m else None


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    tmp: Path = tmp_path_factory.mktemp("parse_errors")
    cases = [("/api/v1/query", {"query": q, "time": "100"}) for q in BAD]
    proc, url = osup.start_prometheus(tmp)
    try:
        want = [osup.http_query(url, p, params) for p, params in cases]
    finally:
        proc.stop()
    return {"prometheus": want, "sotp": asyncio.run(osup.sotp_answers("memory", tmp, [], cases))}


@pytest.mark.parametrize("i", range(len(BAD)), ids=BAD)
def test_parse_error_position_matches_prometheus(answers: dict[str, list[dict[str, Any]]], i: int) -> None:
    want, got = answers["prometheus"][i], answers["sotp"][i]
    assert want["_http"] == 400 and got["_http"] == 400, (want, got)
    assert _position(want) is not None, want
    assert _position(got) == _position(want), f"{BAD[i]!r}: Prometheus {want['error']!r}, SOTP {got['error']!r}"
