"""Oracle: the same dataset in Debian's Prometheus 2.42 and in SOTP, a few hundred queries, same answers.

Prometheus gets the data by remote write in time order; SOTP gets it through its Appender. Both are
queried over HTTP (SOTP in-process through aiohttp's test server and ``query.api.setup``). Labels must
match exactly, values within 1e-9 relative, result types must agree, and an error must meet an error of
the same ``errorType`` and status.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.query import oracle_support as osup

pytestmark = pytest.mark.integration

MIN = 60_000
T_END = osup.T0 + osup.N * osup.STEP
INSTANT_TIMES = [osup.T0 + 10 * MIN, osup.T0 + 31 * MIN + 7_000, osup.T0 + 52 * MIN, T_END + 3 * MIN]
RANGES = [(osup.T0 + 5 * MIN, osup.T0 + 60 * MIN, 60_000), (osup.T0 + 20 * MIN, osup.T0 + 41 * MIN, 37_000)]

C = "http_requests_total"
SEL = [C, f'{C}{{job="api"}}', "temp", "up", '{__name__=~"temp|other_metric"}', f'{C}{{instance=~"i[23]"}}']
RANGE_FUNCS = ["rate", "increase", "delta", "irate", "idelta", "deriv", "changes", "resets", "sum_over_time",
               "avg_over_time", "min_over_time", "max_over_time", "count_over_time", "last_over_time",
               "stddev_over_time", "stdvar_over_time", "present_over_time"]
AGGS = ["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar"]

QUERIES: list[str] = [
    *SEL,
    *(f"{f}({C}[5m])" for f in RANGE_FUNCS),
    *(f"{f}(temp[10m])" for f in RANGE_FUNCS),
    *(f"{f}(up[2m])" for f in ("changes", "resets", "avg_over_time")),
    f"rate({C}[1m])", f"increase({C}[90s])", f"rate({C}[30s])", "delta(temp[1m])",
    *(f"{a}({C})" for a in AGGS),
    *(f"{a} by (job) (rate({C}[5m]))" for a in AGGS),
    *(f"{a} without (instance) (temp)" for a in AGGS),
    f"sum by (job, method) (increase({C}[10m]))", "count by (__name__) ({__name__=~\"temp|up\"})",
    f"topk(3, rate({C}[5m]))", "bottomk(2, temp)", "topk by (job) (1, temp)",
    f"quantile(0.5, rate({C}[5m]))", "quantile by (job) (0.9, temp)", "quantile(1.5, temp)", "quantile(-1, temp)",
    'count_values("value", up)', 'count_values by (job) ("v", up)',
    f"{C} / on(job, instance) group_left sum by (job, instance) ({C})",
    f"sum by (job, instance) ({C}) / on(job, instance) group_right {C}",
    "temp + on(job, instance) group_left(method) topk by (job, instance) (1, http_requests_total)",
    "temp > 0", "temp > bool 0", "0 < temp", "temp == bool temp", "temp != 3", "-temp", "temp % 3", "temp ^ 2",
    "2 ^ temp", "temp / 0", "-temp / 0", "temp - temp", "temp + other_metric", "temp * ignoring(job) other_metric",
    "temp and up == 1", "temp or other_metric", "temp unless on(instance) up == 0", "up or vector(0)",
    "temp and on(instance) up", "temp or on(job) nonexistent", "other_metric unless temp",
    "1 + 2 * 3 ^ 2 ^ 0.5", "(1 + 2) * 3", "5 % 3", "1 / 0", "-1 / 0", "0 / 0", "2 ^ -1", "1 == bool 1",
    "-2 ^ 2", "1e3", "0x1f", "-.5", "Inf", "NaN",
    "temp + on(job) other_metric", f"{C} + on(job, instance) temp",
    'sum by (__name__, job) ({__name__=~"temp|other_metric"}) * 1', '{__name__=~"temp|other_metric"} + 1',
    "abs(temp)", "ceil(temp)", "floor(temp)", "round(temp)", "round(temp, 0.5)", "clamp(temp, -1, 1)",
    "clamp(temp, 1, -1)", "clamp_min(temp, 10)", "clamp_max(temp, 10)", "sqrt(abs(temp))", "ln(abs(temp))",
    "log2(up)", "log10(abs(temp))", "exp(temp / 10)", "sgn(temp)", "sin(temp)", "atan(temp)", "deg(temp)",
    "rad(temp)", "pi()", "tanh(temp / 10)",
    'label_replace(temp, "host", "$1-x", "instance", "i(.*)")', 'label_replace(temp, "job", "", "job", ".*")',
    'label_replace(temp, "foo", "$2", "instance", "(i)(2)")', 'label_replace(temp, "x", "y", "nope", "")',
    'label_join(temp, "both", "/", "job", "instance")', 'label_join(up, "__name__", "", "job")',
    'label_replace(temp, "instance", "same", "instance", ".*")',
    "sort(temp)", "sort_desc(temp)", f"sort_desc(rate({C}[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(req_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.5, rate(req_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.99, req_duration_seconds_bucket)", "histogram_quantile(1.2, req_duration_seconds_bucket)",
    "histogram_quantile(0, sum without (job) (rate(req_duration_seconds_bucket[10m])))",
    "histogram_quantile(0.5, temp)",
    "time()", "timestamp(temp)", "timestamp(temp offset 2m)", "timestamp(sum(temp))", "vector(1)", "vector(time())",
    "scalar(sum(up))", "scalar(up)", "sum(up) + scalar(count(up))", "day_of_month()", "day_of_week()",
    "day_of_year()", "days_in_month()", "hour()", "minute()", "month()", "year()", "hour(timestamp(temp))",
    "minute(temp * 1000000)", 'absent(temp{job="none"})', "absent(temp)", 'absent(nope{a="b", a=~"c"})',
    'absent_over_time(nope{job="x"}[5m])', "absent_over_time(temp[1m])", "absent(sum(nope))",
    "temp offset 5m", f"rate({C}[5m] offset 10m)", "temp offset -2m", f"temp @ {(osup.T0 + 20 * MIN) // 1000}",
    f"rate({C}[5m] @ end())", "temp @ start()", f"sum(rate({C}[5m] @ {(osup.T0 + 30 * MIN) // 1000}))",
    f"max_over_time(rate({C}[5m])[30m:1m])", "avg_over_time(temp[10m:])", "deriv(sum(temp)[20m:2m])",
    "min_over_time(temp[5m:30s] offset 5m)", f"rate({C}[5m:1m])", "last_over_time(temp[5m:2m])",
    "count_over_time((temp > 0)[15m:1m])",
    "predict_linear(temp[10m], 600)", "predict_linear(temp[10m], -60)", "quantile_over_time(0.9, temp[10m])",
    "quantile_over_time(0.25, up[5m])", "holt_winters(temp[10m], 0.3, 0.6)", "holt_winters(temp[10m], 1, 0.5)",
    "stddev_over_time(up[10m])", "deriv(up[5m])", "predict_linear(up[5m], 100)",
    "sum(temp) by (job)", "sum(nonexistent)", "nonexistent", "rate(nonexistent[5m])", "count(nonexistent)",
    '"a string"', "1 > 2", "rate(temp)", "sum(", "foo{", 'temp{job=~".*"}', "unknown_func(temp)",
    "temp[5m]", f"{C}[1m] offset 10m", "temp[2m:30s]", "limitk(1, temp)",
    "temp atan2 other_metric", "temp atan2 2", "up < on(job, instance) group_right temp",
    "temp > on(job, instance) group_left up", "up == on(job, instance) group_right temp",
    'count_values("x", round(temp))', 'label_replace(up, "__name__", "renamed", "", "")',
    f"timestamp(temp @ {(osup.T0 + 25 * MIN) // 1000})",
    # not compared: predict_linear(temp[10m] @ t, 60) in a range query, where 2.42 answers only some steps
    # with moving windows (its @-to-offset rewrite); SOTP pins the window as for every other function
    "sum_over_time(temp[10m] @ end())", "irate(up[10m])", "idelta(temp[1m])",
    f"rate({C}[5m:30s] offset 1m)", f"quantile_over_time(0.5, rate({C}[5m])[10m:1m])",
    "sum by (job) (temp) > bool 10", "abs(temp) unless on(job) (sum by (job) (up) < 3)",
    'sort_desc(count_values("v", up))', "topk(1, temp) by (job)", "bottomk(1, rate(http_requests_total[5m])) by (job)",
    "max by (job) (temp) - on(job) min by (job) (temp)", "count(count by (job) (up))",
    "sum(rate(req_duration_seconds_count[5m])) by (job)"
    ' / sum(rate(req_duration_seconds_bucket{le="+Inf"}[5m])) by (job)',
    "histogram_quantile(0.5, sum by (job, le) (increase(req_duration_seconds_bucket[10m])))",
    "delta(req_duration_seconds_count[3m])", "changes(temp[30m])", "resets(http_requests_total[1h])",
    "stdvar by (job) (http_requests_total)", "group without (instance) (temp)", "sgn(temp) * -1",
    "temp offset 1h", "temp[1m] offset 30s", "up[5m] @ start()", "vector(scalar(up))",
    "clamp(temp, 0, scalar(max(up)) * 20)", "round(temp, 0.1)", "-(temp)", "+temp",
]
def random_queries(n: int, seed: int = 11) -> list[str]:
    """Random compositions of selectors, range functions, aggregations and operators (no topk/sort:
    their tie order is unspecified). Deterministic for a seed, so failures are reproducible."""
    import random

    rnd = random.Random(seed)
    vec_leaves = ["temp", "up", "other_metric", f"{C}", f'{C}{{method="get"}}', "temp offset 3m"]
    range_funcs = ["rate", "increase", "delta", "irate", "deriv", "avg_over_time", "max_over_time",
                   "min_over_time", "sum_over_time", "count_over_time", "changes", "resets", "stddev_over_time",
                   "last_over_time"]
    aggs = ["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar"]
    groupings = ["by (job)", "by (job, instance)", "without (instance)", "", "without (method)"]

    def vec(depth: int) -> str:
        choice = rnd.randrange(9 if depth > 0 else 2)
        if choice == 0:
            return rnd.choice(vec_leaves)
        if choice == 1:
            sel = rnd.choice(vec_leaves[:5])
            rng = rnd.choice(["1m", "5m", "10m"])
            return f"{rnd.choice(range_funcs)}({sel}[{rng}])"
        if choice == 2:
            return f"{rnd.choice(aggs)} {rnd.choice(groupings)} ({vec(depth - 1)})"
        if choice == 3:
            op = rnd.choice(["+", "-", "*", "/", ">", "<", ">= bool", "== bool", "%"])
            num = rnd.choice(["0", "1", "2.5", "-3", "10"])
            return f"({vec(depth - 1)}) {op} {num}" if rnd.random() < 0.7 else f"{num} {op} ({vec(depth - 1)})"
        if choice == 4:
            op = rnd.choice(["+", "-", "/", ">", "< bool"])
            match = rnd.choice(["", "on(job, instance) ", "ignoring(method) ", "on(job) group_left ",
                                "on(job, instance) group_left "])
            return f"({vec(depth - 1)}) {op} {match}({vec(depth - 1)})"
        if choice == 5:
            op = rnd.choice(["and", "or", "unless"])
            match = rnd.choice(["", "on(job) ", "ignoring(instance) "])
            return f"({vec(depth - 1)}) {op} {match}({vec(depth - 1)})"
        if choice == 6:
            fn = rnd.choice(["abs", "ceil", "floor", "sgn", "exp", "ln", "sqrt", "round"])
            return f"{fn}({vec(depth - 1)})"
        if choice == 7:
            fn = rnd.choice(["max_over_time", "avg_over_time", "count_over_time", "last_over_time"])
            return f"{fn}(({vec(depth - 1)})[{rnd.choice(['5m', '10m'])}:{rnd.choice(['1m', '30s', ''])}])"
        if rnd.random() < 0.5:
            return f"quantile {rnd.choice(groupings)} ({rnd.choice(['0.5', '0.9', '0'])}, {vec(depth - 1)})"
        extra = [
            f'label_replace({vec(depth - 1)}, "x", "$1", "instance", "i(.*)")',
            f"clamp({vec(depth - 1)}, -1, {rnd.choice(['5', '50'])})",
            f"timestamp({vec(depth - 1)})",
            f"absent({vec(depth - 1)})",
            f"{vec(depth - 1)} offset {rnd.choice(['1m', '-2m', '7m'])}" if depth == 1 else "up offset 2m",
            f"histogram_quantile({rnd.choice(['0.5', '0.99'])}, sum {rnd.choice(['by (le)', 'by (job, le)'])}"
            f" (rate(req_duration_seconds_bucket[{rnd.choice(['2m', '5m'])}])))",
            f"scalar({vec(depth - 1)}) * {rnd.choice(vec_leaves)}",
            f"vector(scalar({vec(depth - 1)}))",
            f"predict_linear({rnd.choice(vec_leaves[:5])}[5m], {rnd.choice(['60', '-30'])})",
            f"holt_winters({rnd.choice(vec_leaves[:5])}[5m], 0.5, {rnd.choice(['0.1', '0.9'])})",
            f"quantile_over_time({rnd.choice(['0.1', '0.5'])}, {rnd.choice(vec_leaves[:5])}[5m])",
            f"{rnd.choice(range_funcs)}({rnd.choice(vec_leaves[:5])}[5m] @ end())",
        ]
        return rnd.choice(extra)

    return [vec(3) for _ in range(n)]


#: More random queries: SOTP_ORACLE_RANDOM=2000 SOTP_ORACLE_SEED=5 pytest tests/query/test_oracle.py
QUERIES += random_queries(int(os.environ.get("SOTP_ORACLE_RANDOM", "150")),
                          int(os.environ.get("SOTP_ORACLE_SEED", "11")))
ORDERED = ("sort(", "sort_desc(")

BACKENDS = osup.ORACLE_BACKENDS


def _cases() -> list[tuple[str, str, dict[str, str]]]:
    cases = []
    for q in QUERIES:
        for t in INSTANT_TIMES:
            cases.append((q, "/api/v1/query", {"query": q, "time": f"{t / 1000:.3f}"}))
        for start, end, step in RANGES:
            cases.append((q, "/api/v1/query_range",
                          {"query": q, "start": str(start / 1000), "end": str(end / 1000), "step": f"{step / 1000}"}))
    return cases


def _discovery_cases() -> list[tuple[str, str, dict[str, str]]]:
    whole = {"start": str(osup.T0 / 1000 - 60), "end": str(T_END / 1000 + 60)}
    out = []
    for path, params in [
        ("/api/v1/series", {"match[]": "up"}),
        ("/api/v1/series", {"match[]": f'{C}{{job="db"}}'}),
        ("/api/v1/series", {"match[]": '{__name__=~"temp|other_metric", instance!="i2"}'}),
        ("/api/v1/labels", {}),
        ("/api/v1/labels", {"match[]": "req_duration_seconds_bucket"}),
        ("/api/v1/label/__name__/values", {}),
        ("/api/v1/label/job/values", {"match[]": "up"}),
        ("/api/v1/label/le/values", {}),
        ("/api/v1/label/method/values", {"match[]": f'{C}{{instance="i3"}}'}),
        ("/api/v1/label/nope/values", {}),
    ]:
        out.append((f"{path} {params}", path, {**params, **whole}))
    return out


CASES = _cases() + _discovery_cases()


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[dict[str, Any]]]]:
    tmp: Path = tmp_path_factory.mktemp("oracle")
    proc, url = osup.start_prometheus(tmp)
    try:
        for body in osup.write_batches(osup.dataset()):
            osup.remote_write(url, body)
        expected = [osup.http_query(url, path, params) for _, path, params in CASES]
    finally:
        proc.stop()
    result = {"prometheus": expected}
    cases = [(path, params) for _, path, params in CASES]
    for b in BACKENDS:
        try:
            osup.require_backend(b)
        except pytest.skip.Exception:
            continue
        result[b] = asyncio.run(osup.sotp_answers(b, tmp, osup.dataset(), cases))
    yield result


def test_dataset_loaded(answers: dict[str, list[dict[str, Any]]]) -> None:
    """Guard against a vacuous oracle: Prometheus must actually hold the data."""
    first = answers["prometheus"][0]
    assert first["status"] == "success" and len(first["data"]["result"]) == 12, first
    ok = [a for a in answers["prometheus"] if a["status"] == "success" and isinstance(a["data"], dict)]
    non_empty = [a for a in ok if a["data"]["result"] not in ([], None)]
    errors = len(answers["prometheus"]) - len(ok)
    assert len(non_empty) > 0.8 * len(ok) and errors > 40, (len(non_empty), len(ok), errors)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{c[1].rsplit('/', 1)[1]}:{c[0]}:{n}"
                                                     for n, c in enumerate(CASES)])
def test_same_answer(answers: dict[str, list[dict[str, Any]]], backend: str, i: int) -> None:
    if backend not in answers:
        osup.require_backend(backend)
    q, path, params = CASES[i]
    ordered = path.endswith("/query") and q.startswith(ORDERED)
    problem = osup.diff(answers["prometheus"][i], answers[backend][i], ordered=ordered)
    assert problem is None, f"{path} {params}: {problem}"
