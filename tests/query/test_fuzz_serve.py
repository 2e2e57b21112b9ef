"""Grammar-based PromQL fuzz (hypothesis) against a live ``sotp serve`` (issue 17).

Every generated query, benign or hostile (deep nesting, catastrophic regexes, subqueries with tiny steps
over huge ranges, extreme numbers, times and offsets, junk), must get an answer that is not a 5xx other
than 503 ``timeout``; the process must stay up; and ``/-/healthy`` must keep answering while the query
runs: the median of the probes sent during each query within 200 ms (one slow probe on a loaded
machine is noise; a blocked event loop makes them all slow).

``SOTP_FUZZ_EXAMPLES`` sets the number of queries (default 120).
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sotp.codec.remote_write import encode_write_request
from sotp.model import Labels
from tests.conftest import Proc, free_port, sotp_cmd, wait_for_port

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("SOTP_FUZZ_EXAMPLES", "120"))
HEALTH_BUDGET_S = 0.2
T_END = 1_700_000_000


# ---- the grammar -----------------------------------------------------------------------------------------
NAMES = st.sampled_from(["up", "http_requests_total", "temp", "nope", "{__name__=~\"h.*\"}", "a:b:c"])
HOSTILE_RX = st.sampled_from([
    "(a+)+b", "(a|a)*c", "(.*)*x", "([a-z_]+)+x", "(?i)FREE", "((?i)api).*", ".*", ".+", "", "a{1000}",
    "(x{1000}){1000}", "[", "(?<=a)", "\\\\", "日本.*", "a|b|c|d", "\\\\p{Greek}+",
])
DURATION = st.sampled_from(["1ms", "1s", "15s", "1m", "5m", "1h", "1d", "100y", "0s", "1y2w", "90m"])
NUMBER = st.sampled_from(["0", "1", "-1", "0.5", "1e308", "-1e308", "1e-320", "Inf", "-Inf", "NaN", "0x7fffffff",
                          "9223372036854775807", "2^63", "1/0"])
FUNCS_V = st.sampled_from(["abs", "ceil", "floor", "exp", "ln", "sqrt", "sgn", "sort", "sort_desc", "timestamp",
                           "year", "hour", "-", "absent", "scalar"])
FUNCS_R = st.sampled_from(["rate", "increase", "delta", "irate", "deriv", "changes", "resets", "sum_over_time",
                           "avg_over_time", "stddev_over_time", "count_over_time", "last_over_time",
                           "absent_over_time", "present_over_time"])
AGGS = st.sampled_from(["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar"])
OPS = st.sampled_from(["+", "-", "*", "/", "%", "^", "==", "!=", "> bool", "<", "and", "or", "unless", "atan2"])


def _selector() -> st.SearchStrategy[str]:
    matcher = st.builds(lambda n, op, v: f'{n}{op}"{v}"', st.sampled_from(["job", "instance", "__name__", "x"]),
                        st.sampled_from(["=", "!=", "=~", "!~"]), HOSTILE_RX)
    return st.builds(lambda n, ms: n if not ms or n.startswith("{") else f"{n}{{{', '.join(ms)}}}",
                     NAMES, st.lists(matcher, max_size=3))


def _expr(depth: int) -> st.SearchStrategy[str]:
    leaf = st.one_of(_selector(), NUMBER, st.just("time()"), st.just("vector(1)"))
    if depth == 0:
        return leaf
    sub = _expr(depth - 1)
    return st.one_of(
        leaf,
        st.builds(lambda f, e: f"{f}({e})", FUNCS_V, sub),
        st.builds(lambda f, s, d: f"{f}({s}[{d}])", FUNCS_R, _selector(), DURATION),
        st.builds(lambda f, e, d, s: f"{f}(({e})[{d}:{s}])", FUNCS_R, sub, DURATION, DURATION),
        st.builds(lambda a, e, g: f"{a} {g} ({e})", AGGS, sub,
                  st.sampled_from(["", "by (job)", "without (instance)", "by (__name__)"])),
        st.builds(lambda a, b, op: f"({a}) {op} ({b})", sub, sub, OPS),
        st.builds(lambda e, rx: f'label_replace({e}, "dst", "$1", "job", "{rx}")', sub, HOSTILE_RX),
        st.builds(lambda e, k: f"topk({k}, {e})", sub, NUMBER),
        st.builds(lambda e, q: f"quantile({q}, {e})", sub, NUMBER),
        st.builds(lambda e: f'count_values("v", {e})', sub),
        st.builds(lambda e, q: f"histogram_quantile({q}, {e})", sub, NUMBER),
        st.builds(lambda e, d: f"({e}) offset {d}", sub, DURATION),
        st.builds(lambda e, t: f"({e}) @ {t}", sub, st.sampled_from(["start()", "end()", "0", "1e15", "-1e12"])),
    )


HOSTILE = st.one_of(
    st.builds(lambda n: "(" * n + "1" + ")" * n, st.integers(0, 30_000)),
    st.builds(lambda n: "1" + "+1" * n, st.integers(0, 20_000)),
    st.builds(lambda n: "sum(" * n + "up" + ")" * n, st.integers(0, 3_000)),
    st.builds(lambda n, e: "abs(" * n + e + ")" * n, st.integers(0, 200), st.just("up")),
    st.builds(lambda s: f'up{{job="{s}"}}', st.text(max_size=300)),
    st.text(max_size=200),
    st.builds(lambda d, s: f"count_over_time(vector(1)[{d}:{s}])", DURATION, DURATION),
)
QUERY = st.one_of(_expr(3), HOSTILE)


# ---- the server ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Proc]]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    (tmp / "sotp.yml").write_text(
        "server:\n  query_timeout: 5s\n  query_max_samples: 2000000\n  query_concurrency: 2\n")
    port = free_port()
    proc = Proc(sotp_cmd("serve", "--config", str(tmp / "sotp.yml"), "--listen", f"127.0.0.1:{port}",
                         "--storage", f"sqlite:///{tmp}/fuzz.db"), tmp / "serve.log")
    try:
        wait_for_port(port, timeout=60)
        base = f"http://127.0.0.1:{port}"
        series = []
        for job in ("api", "db"):
            for inst in ("a", "b", "c"):
                pts = [((T_END - 3600 + i * 15) * 1000, float(i * (1 + len(inst)))) for i in range(240)]
                series.append((Labels({"__name__": "http_requests_total", "job": job, "instance": inst}), pts))
                series.append((Labels({"__name__": "temp", "job": job, "instance": inst}),
                               [(t, (v % 37) - 10.5) for t, v in pts]))
                series.append((Labels({"__name__": "up", "job": job, "instance": inst}), [(t, 1.0) for t, _ in pts]))
        req = urllib.request.Request(f"{base}/api/v1/write", data=encode_write_request(series), method="POST",
                                     headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                                              "X-Prometheus-Remote-Write-Version": "0.1.0"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 204
        yield base, proc
    finally:
        proc.stop()


def _post(base: str, path: str, form: dict[str, str], timeout: float = 60) -> tuple[int, dict[str, Any]]:
    data = urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(f"{base}{path}", data=data, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw or b"{}")
        except ValueError:
            return err.code, {"raw": raw[:200].decode(errors="replace")}


def _health_probes(base: str, done: threading.Event, out: list[float]) -> None:
    while not done.is_set():
        t = time.monotonic()
        try:
            with urllib.request.urlopen(f"{base}/-/healthy", timeout=10) as r:
                r.read()
        except OSError:
            out.append(float("inf"))
        else:
            out.append(time.monotonic() - t)
        done.wait(0.02)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(query=QUERY, is_range=st.booleans())
def test_fuzz_never_5xx_never_crash_health_answers(server: tuple[str, Proc], query: str, is_range: bool) -> None:
    base, proc = server
    if is_range:
        form = {"query": query, "start": str(T_END - 3600), "end": str(T_END), "step": "60"}
        path = "/api/v1/query_range"
    else:
        form, path = {"query": query, "time": str(T_END)}, "/api/v1/query"
    done = threading.Event()
    probes: list[float] = []
    prober = threading.Thread(target=_health_probes, args=(base, done, probes), daemon=True)
    started = time.monotonic()
    prober.start()
    try:
        status, body = _post(base, path, form)
    finally:
        done.set()
        prober.join()
    took = time.monotonic() - started
    assert proc.popen.poll() is None, f"sotp serve died on {query[:200]!r}: {proc.output()[-2000:]}"
    assert status < 500 or (status == 503 and body.get("errorType") == "timeout"), (query[:300], status, body)
    if status >= 400:
        assert body.get("status") == "error" and body.get("errorType") and body.get("error"), body
    if took > 3 * HEALTH_BUDGET_S and probes:  # the query ran long enough for the probes to mean something
        assert statistics.median(probes) < HEALTH_BUDGET_S, (query[:300], took, sorted(probes)[-5:])


RANGE_3H = {"start": str(T_END - 3 * 3600), "end": str(T_END), "step": "1"}
HEAVY: list[tuple[str, dict[str, str]]] = [
    # 1.7M inner steps, under the 2M limit
    ("/api/v1/query", {"query": "count_over_time(vector(1)[1d:50ms])", "time": str(T_END)}),
    ("/api/v1/query", {"query": 'count(label_replace(count_over_time(vector(1)[6h:20ms]), "d", "$1", "x", "(a+)+b"))',
                       "time": str(T_END)}),
    # 10,801 steps x 6 series: a Python loop per window
    ("/api/v1/query_range", {"query": "quantile_over_time(0.5, temp[10m])", **RANGE_3H}),
    ("/api/v1/query_range", {"query": 'count_values("v", floor(temp))', **RANGE_3H}),
]


@pytest.mark.parametrize(("path", "form"), HEAVY, ids=[f["query"][:40] for _, f in HEAVY])
def test_health_answers_while_a_heavy_query_runs(server: tuple[str, Proc], path: str, form: dict[str, str]) -> None:
    base, proc = server
    done = threading.Event()
    probes: list[float] = []
    prober = threading.Thread(target=_health_probes, args=(base, done, probes), daemon=True)
    prober.start()
    try:
        status, body = _post(base, path, form)
    finally:
        done.set()
        prober.join()
    query = form["query"]
    assert proc.popen.poll() is None, proc.output()[-2000:]
    assert status == 200 or (status in (422, 503) and body.get("errorType") in ("execution", "timeout")), body
    assert len(probes) >= 5, (query, probes)  # the query ran long enough to be probed
    assert statistics.median(probes) < HEALTH_BUDGET_S, (query, sorted(probes)[-5:])
