"""Table tests for sotp.codec.textparse: the text format 0.0.4 and OpenMetrics 1.0 as Prometheus reads them."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sotp.codec.textparse import is_openmetrics, iter_samples, parse, parse_series
from sotp.errors import DecodeError

NaN = float("nan")
INF = float("inf")

# (id, text, openmetrics, expected [(name, labels, value, t_ms)])
GOOD = [
    ("bare", "m 1\n", False, [("m", (), 1.0, None)]),
    ("no-final-newline", "m 1", False, [("m", (), 1.0, None)]),
    ("labels", 'm{a="1",b="x y"} 2.5\n', False, [("m", (("a", "1"), ("b", "x y")), 2.5, None)]),
    ("label-order-kept", 'm{b="2",a="1"} 1', False, [("m", (("b", "2"), ("a", "1")), 1.0, None)]),
    ("empty-braces", "m{} 3", False, [("m", (), 3.0, None)]),
    ("trailing-comma", 'm{a="1",} 3', False, [("m", (("a", "1"),), 3.0, None)]),
    ("blanks-inside", 'm{ a = "1" , b="2" } 3', False, [("m", (("a", "1"), ("b", "2")), 3.0, None)]),
    ("blank-before-brace", 'm {a="1"} 3', False, [("m", (("a", "1"),), 3.0, None)]),
    ("tabs", "m\t4\t1000", False, [("m", (), 4.0, 1000)]),
    (
        "escapes",
        r'm{p="C:\\dir",q="say \"hi\"",n="a\nb",o="\t"} 1',
        False,
        [("m", (("p", "C:\\dir"), ("q", 'say "hi"'), ("n", "a\nb"), ("o", "\\t")), 1.0, None)],
    ),
    (
        "specials-in-value",
        'm{a="x}y,z=#w"} 1',
        False,
        [("m", (("a", "x}y,z=#w"),), 1.0, None)],
    ),
    ("timestamp-ms", "m 1 1700000000123", False, [("m", (), 1.0, 1700000000123)]),
    ("negative-timestamp", "m 1 -5", False, [("m", (), 1.0, -5)]),
    ("inf-nan", "a +Inf\nb -Inf\nc NaN\nd Inf", False,
     [("a", (), INF, None), ("b", (), -INF, None), ("c", (), NaN, None), ("d", (), INF, None)]),
    ("exponent", "m 1.5e-3\nn -2E+10", False, [("m", (), 0.0015, None), ("n", (), -2e10, None)]),
    ("colon-name", "job:rate:5m 7", False, [("job:rate:5m", (), 7.0, None)]),
    (
        "comments-and-blank-lines",
        "# HELP m help text\n# TYPE m gauge\n\n# a plain comment\nm 1\n   \n",
        False,
        [("m", (), 1.0, None)],
    ),
    (
        "histogram",
        '# TYPE h histogram\nh_bucket{le="0.5"} 1\nh_bucket{le="+Inf"} 3\nh_sum 4.5\nh_count 3\n',
        False,
        [("h_bucket", (("le", "0.5"),), 1.0, None), ("h_bucket", (("le", "+Inf"),), 3.0, None),
         ("h_sum", (), 4.5, None), ("h_count", (), 3.0, None)],
    ),
    (
        "summary",
        '# TYPE s summary\ns{quantile="0.99"} 0.2\ns_sum 10\ns_count 50\n',
        False,
        [("s", (("quantile", "0.99"),), 0.2, None), ("s_sum", (), 10.0, None), ("s_count", (), 50.0, None)],
    ),
    ("untyped", "# TYPE u untyped\nu 5\n", False, [("u", (), 5.0, None)]),
    ("om-eof", "# TYPE m gauge\nm 1\n# EOF\n", True, [("m", (), 1.0, None)]),
    ("om-eof-no-newline", "m 1\n# EOF", True, [("m", (), 1.0, None)]),
    ("om-timestamp-seconds", "m 1 1700000000.5\n# EOF\n", True, [("m", (), 1.0, 1700000000500)]),
    (
        "om-exemplar-ignored",
        '# TYPE c counter\nc_total 3 # {trace_id="abc"} 1 1700000000.1\n'
        'c_total{a="1"} 4 1700000001 # {trace_id="d e"} 2\n# EOF\n',
        True,
        [("c_total", (), 3.0, None), ("c_total", (("a", "1"),), 4.0, 1700000001000)],
    ),
    ("om-counter-created", "c_total 3\nc_created 1.7e9\n# EOF", True,
     [("c_total", (), 3.0, None), ("c_created", (), 1.7e9, None)]),
]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


Want = list[tuple[str, tuple[tuple[str, str], ...], float, int | None]]


@pytest.mark.parametrize(("text", "om", "want"), [c[1:] for c in GOOD], ids=[c[0] for c in GOOD])
def test_parse_good(text: str, om: bool, want: Want) -> None:
    got = parse(text, openmetrics=om).samples
    assert [(s.name, s.labels, s.t_ms) for s in got] == [(w[0], w[1], w[3]) for w in want]
    assert all(_same(s.value, w[2]) for s, w in zip(got, want, strict=True))


BAD = [
    ("missing-value", "m\n", False, "line 1"),
    ("bad-value", "m abc\n", False, "invalid sample value"),
    ("go-rejects-underscore", "m 1_000\n", False, "invalid sample value"),
    ("go-rejects-infinity-word", "m infinity\n", False, "invalid sample value"),
    ("too-many-fields", "m 1 2 3\n", False, "expected"),
    ("bad-timestamp", "m 1 1.5\n", False, "invalid timestamp"),
    ("bad-metric-name", "0m 1\n", False, "invalid metric name"),
    ("bad-label-name", 'm{0a="1"} 1\n', False, "invalid label name"),
    ("unquoted-value", "m{a=1} 1\n", False, "invalid label set"),
    ("repeated-label", 'm{a="1",a="2"} 1\n', False, "repeated"),
    ("unterminated", 'm{a="1" 1\n', False, "unterminated"),
    ("second-line-reported", "a 1\nb x\n", False, "line 2"),
    ("bad-type", "# TYPE m gauges\nm 1\n", False, "unknown metric type"),
    ("om-missing-eof", "m 1\n", True, "# EOF"),
    ("om-text-after-eof", "m 1\n# EOF\nn 2\n", True, "after '# EOF'"),
    ("om-nan-timestamp", "m 1 NaN\n# EOF\n", True, "invalid timestamp"),
]


@pytest.mark.parametrize(("text", "om", "error"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_parse_bad(text: str, om: bool, error: str) -> None:
    with pytest.raises(DecodeError, match=None) as info:
        parse(text, openmetrics=om)
    assert error in str(info.value)


def test_iter_samples_keeps_raw_series_for_caching() -> None:
    text = 'm{a="x y"} 1 10\nm{a="x y"} 2\nn 3\n'
    assert list(iter_samples(text)) == [('m{a="x y"}', 1.0, 10), ('m{a="x y"}', 2.0, None), ("n", 3.0, None)]
    assert parse_series('m{a="x y"}') == ("m", (("a", "x y"),))


def test_metadata() -> None:
    text = "# HELP m first\\nline \\\\ done\n# TYPE m counter\n# UNIT m seconds\nm 1\n# EOF\n"
    exp = parse(text, openmetrics=True)
    assert exp.types == {"m": "counter"}
    assert exp.helps == {"m": "first\nline \\ done"}
    assert exp.units == {"m": "seconds"}


@pytest.mark.parametrize(
    ("content_type", "want"),
    [
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", True),
        ("Application/OpenMetrics-Text", True),
        ("text/plain; version=0.0.4; charset=utf-8", False),
        ("", False),
        (None, False),
    ],
)
def test_is_openmetrics(content_type: str | None, want: bool) -> None:
    assert is_openmetrics(content_type) is want


def test_agrees_with_prometheus_client_on_a_mixed_exposition() -> None:
    """Cross-check against prometheus_client's parser (an independent implementation) on the text format."""
    text = (
        "# HELP go_gc_duration_seconds A summary.\n# TYPE go_gc_duration_seconds summary\n"
        'go_gc_duration_seconds{quantile="0"} 1.8e-05\ngo_gc_duration_seconds{quantile="1"} 0.0003\n'
        "go_gc_duration_seconds_sum 0.01\ngo_gc_duration_seconds_count 40\n"
        "# TYPE http_requests_total counter\n"
        'http_requests_total{code="200",path="/a \\"b\\"",method="GET"} 1027 1395066363000\n'
        'http_requests_total{code="400",path="C:\\\\x",method="POST"} 3 1395066363000\n'
        "# TYPE h histogram\n"
        'h_bucket{le="0.1"} 3\nh_bucket{le="+Inf"} 9\nh_sum 2.5\nh_count 9\n'
        "weird_untyped NaN\n"
    )
    ours = [(s.name, dict(s.labels), s.value, s.t_ms) for s in parse(text).samples]
    theirs = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            t_ms = None if s.timestamp is None else round(float(s.timestamp) * 1000)
            theirs.append((s.name, dict(s.labels), s.value, t_ms))
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a[0] == b[0] and a[1] == b[1] and a[3] == b[3] and _same(a[2], b[2])
