"""Bit-exact answers: one regression per numeric difference found by auditing 2.42's promql/ against SOTP.

Each finding has a small dataset built to expose it and queries whose answers must be *identical strings*
to Debian's Prometheus 2.42 holding the same data (no tolerance: these differences live in the last bit,
where ``floor()``, ``==`` and histogram bucket boundaries make them visible). Every backend answers.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from sotp.codec.remote_write import encode_write_request
from sotp.model import Labels
from tests.query import oracle_support as osup

pytestmark = pytest.mark.integration

S = 1000


def _series(name: str, labels: dict[str, str], pts: list[tuple[int, float]]) -> tuple[Labels, list[tuple[int, float]]]:
    return Labels({"__name__": name, **labels}), pts


#: finding → (dataset, [(query, instant time in s, ordered)])
FINDINGS: dict[str, tuple[osup.Dataset, list[tuple[str, float, bool]]]] = {
    # rate: 2.42 computes factor = interval / sampled; factor /= range; result *= factor. The other order
    # differs in the last bit and, through histogram_quantile, lands on the other side of a bucket bound.
    "rate_extrapolation_order": (
        [
            _series("h_bucket", {"le": "0.1"}, [(0, 2), (15205, 5), (30212, 5), (45553, 6)]),
            _series("h_bucket", {"le": "+Inf"}, [(0, 3), (15205, 7), (30212, 7), (45553, 10)]),
        ],
        [("rate(h_bucket[1m])", 61, False), ("histogram_quantile(0.25, rate(h_bucket[1m]))", 61, False),
         ("increase(h_bucket[1m])", 61, False)],
    ),
    # rate divides by Go's Duration.Seconds() (whole seconds + fraction), which is not ms / 1000 for 1118 ms
    "rate_range_seconds": (
        [_series("c", {}, [(i * 100, float(i * i)) for i in range(40)])],
        [("rate(c[1118ms])", 3.9, False), ("rate(c[1247ms])", 3.5, False), ("delta(c[1118ms])", 3.9, False)],
    ),
    # ^ is Go's math.Pow: repeated squaring for integer exponents (two roundings for x^3), its own special cases
    "pow_go_math": (
        [_series("v", {"i": str(i)}, [(0, x)]) for i, x in enumerate([3.7, 7, 10, 1.1, -2, 0, 0.5, 1e10, 123.456])],
        [("v ^ 3", 1, False), ("v ^ -3", 1, False), ("v ^ 100", 1, False), ("v ^ 2", 1, False),
         ("v ^ -1", 1, False), ("v ^ (1/0)", 1, False), ("(-1/0) ^ v", 1, False),
         ("v ^ 7", 1, False), ("floor(v ^ 3)", 1, False),
         ("2 ^ (v * 0 + 3)", 1, False), ("(-v) ^ 3", 1, False)],
    ),
    # quantile with a NaN q is NaN (SOTP crashed with a 500)
    "quantile_nan_q": (
        [_series("v", {"i": str(i)}, [(0, x)]) for i, x in enumerate([1, 2, 3])],
        [("quantile(NaN, v)", 1, False), ("quantile_over_time(NaN, v[1m])", 1, False)],
    ),
    # histogram_quantile(NaN, ...) is NaN before anything else; a NaN first bucket disables ensureMonotonic;
    # the rank is found by binary search (sort.Search), not a linear scan
    "histogram_quantile_nan": (
        [
            _series("hb", {"le": "0.1"}, [(0, float("nan"))]),
            _series("hb", {"le": "1"}, [(0, 5)]),
            _series("hb", {"le": "2"}, [(0, 2)]),
            _series("hb", {"le": "+Inf"}, [(0, 4)]),
            _series("hc", {"le": "0.5"}, [(0, 1)]),
            _series("hc", {"le": "1"}, [(0, float("nan"))]),
            _series("hc", {"le": "2"}, [(0, 3)]),
            _series("hc", {"le": "+Inf"}, [(0, 4)]),
        ],
        [("histogram_quantile(NaN, hb)", 1, False), ("histogram_quantile(0.5, hb)", 1, False),
         ("histogram_quantile(0.9, hb)", 1, False), ("histogram_quantile(0.5, hc)", 1, False),
         ("histogram_quantile(0.2, hc)", 1, False), ("histogram_quantile(0.8, hc)", 1, False)],
    ),
    # sort and sort_desc put NaN last in both directions
    "sort_nan_last": (
        [_series("v", {"i": str(i)}, [(0, x)]) for i, x in enumerate([3, float("nan"), 1, 2, 5])],
        [("sort(v)", 1, True), ("sort_desc(v)", 1, True)],
    ),
    # absent() labels: 2.42's builder runs the matchers in order, so a later equality matcher sets the label
    # again after another matcher deleted it
    "absent_label_order": (
        [_series("present", {}, [(0, 1)])],
        [('absent(nope{job=~"a", job="b"})', 1, False), ('absent(nope{job="b", job=~"a"})', 1, False),
         ('absent(nope{job="", x="y"})', 1, False), ('absent(nope{job!="a", job="b", job="c"})', 1, False)],
    ),
    # regexes are RE2 with Go's anchoring (issue 17 #2): (?i) inside a group, "." never matches a newline,
    # "$" is the end of the text (Python's re matched "a\n" with "a"), alternations and .* / .+ shortcuts
    "regex_re2_semantics": (
        [_series("r", {"t": t}, [(0, float(i))]) for i, t in enumerate(["free", "FREE", "a\nb", "a\n", "a", "xa"])],
        [('r{t=~"(?i)FREE"}', 1, False), ('r{t=~"((?i)fr)EE"}', 1, False), ('r{t=~"a.b"}', 1, False),
         ('r{t=~"a"}', 1, False), ('r{t=~".*"}', 1, False), ('r{t=~".+"}', 1, False), ('r{t!~".*"}', 1, False),
         ('r{t=~"a|free|zzz"}', 1, False), ('r{t=~"(?s)a.b"}', 1, False), ('r{t=~"a\\n"}', 1, False),
         ('label_replace(r, "d", "$1-${2}x$2", "t", "(?i)(f)(r)ee")', 1, False),
         ('label_replace(r, "d", "$name", "t", "(?P<name>x)a")', 1, False),
         ('label_replace(r{t="a"}, "d", "[$1]", "t", "a|(b)")', 1, False),
         ('r{t=~"[^x]+"}', 1, False)],
    ),
}

CASES = [(f, q, t, o) for f, (_, qs) in FINDINGS.items() for q, t, o in qs]


def _values(body: dict[str, Any]) -> Any:
    """The comparable part of an answer: status, type, and the result with every value as printed."""
    if body.get("status") != "success":
        return (body.get("status"), body.get("errorType"), body["_http"])
    data = body["data"]
    result = data["result"]
    if data["resultType"] in ("scalar", "string"):
        return data["resultType"], result
    return data["resultType"], [(json.dumps(r["metric"], sort_keys=True), r.get("value") or r.get("values"))
                                for r in result]


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[dict[str, Any]]]]:
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for finding, (data, queries) in FINDINGS.items():
        tmp: Path = tmp_path_factory.mktemp(finding)
        cases = [("/api/v1/query", {"query": q, "time": str(t)}) for q, t, _ in queries]
        proc, url = osup.start_prometheus(tmp)
        try:
            osup.remote_write(url, encode_write_request(data))
            got = {"prometheus": [osup.http_query(url, p, params) for p, params in cases]}
        finally:
            proc.stop()
        for b in osup.ORACLE_BACKENDS:
            try:
                osup.require_backend(b)
            except pytest.skip.Exception:
                continue
            got[b] = asyncio.run(osup.sotp_answers(b, tmp, data, cases))
        out[finding] = got
    return out


@pytest.mark.parametrize("backend", osup.ORACLE_BACKENDS)
@pytest.mark.parametrize(("finding", "query", "t", "ordered"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_bit_exact(answers: dict[str, dict[str, list[dict[str, Any]]]], backend: str, finding: str, query: str,
                   t: float, ordered: bool) -> None:
    got = answers[finding]
    if backend not in got:
        osup.require_backend(backend)
    i = [q for q, _, _ in FINDINGS[finding][1]].index(query)
    want, have = _values(got["prometheus"][i]), _values(got[backend][i])
    if not ordered and isinstance(want, tuple) and isinstance(want[1], list):
        want, have = (want[0], sorted(want[1])), (have[0], sorted(have[1]))
    assert have == want, f"{query} at {t}: Prometheus {got['prometheus'][i]}, SOTP {got[backend][i]}"


def test_findings_are_not_vacuous(answers: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
    """Prometheus answered most of each finding's queries with data (a typo would make both sides empty)."""
    for finding, got in answers.items():
        bodies = got["prometheus"]
        assert all(b["status"] == "success" for b in bodies), (finding, bodies)
        assert sum(1 for b in bodies if b["data"]["result"]) > len(bodies) / 2, (finding, bodies)
