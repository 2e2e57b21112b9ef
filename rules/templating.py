"""Prometheus's template functions and the expansion of alert labels and annotations.

:func:`expand_alert_text` is what an alerting rule does for every label value and annotation: it prepends
``{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}``
to the text, names the template ``__alert_<rule name>``, and turns any error into
``<error expanding template: ...>`` (Prometheus 2.42's ``template`` package).
"""

from __future__ import annotations

import ipaddress
import math
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rules.gofmt import GoTime, format_float, sprint_value
from rules.template import Func, FuncError, TemplateError, parse

#: Runs an instant PromQL query at the evaluation time: ``(expr) -> [(labels, value)]``.
QueryFunc = Callable[[str], list[tuple[dict[str, str], float]]]

ALERT_DEFS = (
    "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
)


@dataclass
class Sample:
    """``*template.sample``: what ``query`` returns elements of."""

    labels: dict[str, str]
    value: float

    go_type = "*template.sample"
    go_fields = {"Labels": "labels", "Value": "value"}  # noqa: RUF012 - class-level field table

    def go_value(self, top: bool) -> str:
        inner = f"{{{sprint_value(self.labels, False)} {sprint_value(self.value, False)}}}"
        return "&" + inner if top else f"0x{id(self):x}"


@dataclass
class AlertData:
    """The template data of an alert (Prometheus's ``AlertTemplateData`` struct)."""

    labels: dict[str, str]
    external_labels: dict[str, str]
    external_url: str
    value: float

    go_type = "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value float64 }"
    go_fields = {  # noqa: RUF012 - class-level field table
        "Labels": "labels",
        "ExternalLabels": "external_labels",
        "ExternalURL": "external_url",
        "Value": "value",
    }

    def go_value(self, top: bool) -> str:
        return (f"{{{sprint_value(self.labels, False)} {sprint_value(self.external_labels, False)} "
                f"{self.external_url} {sprint_value(self.value, False)}}}")


def _to_float(v: Any) -> float:
    """Prometheus's ``convertToFloat``."""
    if isinstance(v, bool):
        raise FuncError("can't convert bool to float")
    if isinstance(v, float):
        return v
    if isinstance(v, int):
        return float(v)
    if isinstance(v, str):
        return parse_go_float(v)
    if v is None:
        raise FuncError("can't convert <nil> to float")
    from rules.gofmt import type_name

    raise FuncError(f"can't convert {type_name(v)} to float")


_GO_FLOAT = re.compile(
    r"^[+-]?(?:(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][+-]?\d+)?|\d+\.|inf|infinity|nan"
    r"|0[xX][\da-fA-F_.]+(?:[pP][+-]?\d+)?)$",
    re.IGNORECASE,
)


def parse_go_float(s: str) -> float:
    """``strconv.ParseFloat(s, 64)`` with its error text."""
    if _GO_FLOAT.match(s):
        t = s.replace("_", "")
        try:
            if "x" in t.lower():
                return float.fromhex(t)
            return float(t)
        except (ValueError, OverflowError):
            pass
    raise FuncError(f'strconv.ParseFloat: parsing {_quote(s)}: invalid syntax')


def _quote(s: str) -> str:
    from rules.gofmt import go_quote

    return go_quote(s)


def humanize(i: Any) -> str:
    v = _to_float(i)
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    if abs(v) >= 1:
        prefix = ""
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix = p
            v /= 1000
        return _g4(v) + prefix
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return _g4(v) + prefix


def _g4(v: float) -> str:
    """``fmt.Sprintf("%.4g", v)``."""
    return format_float(v, "g", 4)


def humanize1024(i: Any) -> str:
    v = _to_float(i)
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix = p
        v /= 1024
    return _g4(v) + prefix


def humanize_duration(i: Any) -> str:
    v = _to_float(i)
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    if v == 0:
        return _g4(v) + "s"
    if abs(v) >= 1:
        sign = ""
        if v < 0:
            sign = "-"
            v = -v
        duration = int(v)
        seconds = duration % 60
        minutes = (duration // 60) % 60
        hours = (duration // 3600) % 24
        days = duration // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return f"{_g4(v)}{prefix}s"


def humanize_percentage(i: Any) -> str:
    return _g4(_to_float(i) * 100) + "%"


def _float_to_time(v: float) -> GoTime:
    ts = v * 1e9
    if ts > 2**63 - 1 or ts < -(2**63):
        raise FuncError(f"{sprint_value(v)} cannot be represented as a nanoseconds timestamp since it overflows int64")
    # model.TimeFromUnixNano truncates to milliseconds
    ms = int(ts) // 1_000_000 if ts >= 0 else -((-int(ts)) // 1_000_000)
    return GoTime(ms * 1_000_000)


def humanize_timestamp(i: Any) -> str:
    v = _to_float(i)
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    return str(_float_to_time(v))


def to_time(i: Any) -> GoTime:
    v = _to_float(i)
    if math.isnan(v) or math.isinf(v):
        raise FuncError("value is NaN or Inf")
    return _float_to_time(v)


def _go_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise FuncError(f"error parsing regexp: {err}: `{pattern}`") from None


def _expand_template(template: str, m: re.Match[str]) -> str:
    """Go's ``Regexp.Expand``: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``; unknown groups are empty."""
    out = []
    i = 0
    n = len(template)
    while i < n:
        c = template[i]
        if c != "$" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        if template[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        if template[i + 1] == "{":
            j = template.find("}", i + 2)
            name = template[i + 2 : j] if j > 0 else ""
            if j < 0 or not name or not re.fullmatch(r"\w+", name):
                out.append("$")
                i += 1
                continue
            i = j + 1
        else:
            j = i + 1
            while j < n and (template[j].isalnum() or template[j] == "_"):
                j += 1
            name = template[i + 1 : j]
            if not name:
                out.append("$")
                i += 1
                continue
            i = j
        try:
            g = m.group(int(name)) if name.isdigit() else m.group(name)
        except IndexError:
            g = None
        out.append(g or "")
    return "".join(out)


def re_replace_all(pattern: str, repl: str, text: str) -> str:
    rx = _go_regex(pattern)
    return rx.sub(lambda m: _expand_template(repl, m), text)


def _match(pattern: str, s: str) -> bool:
    return _go_regex(pattern).search(s) is not None


def _title(s: str) -> str:
    """Go's deprecated ``strings.Title``: upper-case the first letter of each word."""
    out = []
    prev_sep = True
    for ch in s:
        out.append(ch.upper() if prev_sep and ch.isalpha() else ch)
        prev_sep = not (ch.isalnum() or ch == "_") if ord(ch) < 128 else ch.isspace()
    return "".join(out)


def _split_host_port(hp: str) -> tuple[str, str] | None:
    if hp.startswith("["):
        end = hp.find("]")
        if end < 0 or not hp[end + 1 :].startswith(":"):
            return None
        return hp[1:end], hp[end + 2 :]
    if hp.count(":") != 1:
        return None
    host, port = hp.split(":")
    return host, port


def strip_port(hp: str) -> str:
    sp = _split_host_port(hp)
    return hp if sp is None else sp[0]


def strip_domain(hp: str) -> str:
    sp = _split_host_port(hp)
    host, port = (hp, "") if sp is None else sp
    try:
        ipaddress.ip_address(host)
        return hp
    except ValueError:
        pass
    host = host.split(".")[0]
    if port:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return host


def _table_link(expr: str) -> str:
    return f"/graph?g0.expr={urllib.parse.quote_plus(expr, safe='')}&g0.tab=1"


def _graph_link(expr: str) -> str:
    return f"/graph?g0.expr={urllib.parse.quote_plus(expr, safe='')}&g0.tab=0"


def _parse_duration(d: str) -> float:
    from rules.durations import parse_go_duration

    try:
        return parse_go_duration(d) / 1000.0
    except ValueError as err:
        raise FuncError(str(err)) from None


def _first(v: list[Sample]) -> Sample:
    if v:
        return v[0]
    raise FuncError("first() called on vector with no elements")


def _sort_by_label(label: str, v: list[Sample]) -> list[Sample]:
    v.sort(key=lambda s: s.labels.get(label, ""))
    return v


NIL_POINTER = "runtime error: invalid memory address or nil pointer dereference"


def template_funcs(query: QueryFunc | None, external_url: str | None) -> dict[str, Func]:
    """Prometheus's ``FuncMap`` for one expansion (``query`` runs at the evaluation time).

    ``external_url`` None is the nil URL promtool's test runner passes: ``externalURL`` and ``pathPrefix``
    then fail as they do there.
    """

    def run_query(q: str) -> list[Sample]:
        if query is None:
            raise FuncError("no query function")  # Prometheus would dereference nil: promtool check only parses
        return [Sample(dict(lb), v) for lb, v in query(q)]

    parsed_url = urllib.parse.urlsplit(external_url or "")

    def url_func(fn: Callable[[], str]) -> Callable[[], str]:
        def call() -> str:
            if external_url is None:
                raise FuncError(NIL_POINTER)
            return fn()

        return call

    sample_t = "obj:*template.sample"
    result_t = "obj:template.queryResult"
    return {
        "query": Func(run_query, ("str",)),
        "first": Func(_first, (result_t,)),
        "label": Func(lambda name, s: "" if s is None else s.labels.get(name, ""), ("str", sample_t)),
        "value": Func(lambda s: s.value, (sample_t,)),
        "strvalue": Func(lambda s: s.labels.get("__value__", ""), (sample_t,)),
        "args": Func(lambda *a: {f"arg{i}": x for i, x in enumerate(a)}, ("any",), variadic=True),
        "reReplaceAll": Func(re_replace_all, ("str", "str", "str")),
        "safeHtml": Func(lambda s: s, ("str",)),
        "match": Func(_match, ("str", "str")),
        "title": Func(_title, ("str",)),
        "toUpper": Func(str.upper, ("str",)),
        "toLower": Func(str.lower, ("str",)),
        "graphLink": Func(_graph_link, ("str",)),
        "tableLink": Func(_table_link, ("str",)),
        "sortByLabel": Func(_sort_by_label, ("str", result_t)),
        "stripPort": Func(strip_port, ("str",)),
        "stripDomain": Func(strip_domain, ("str",)),
        "humanize": Func(humanize, ("any",)),
        "humanize1024": Func(humanize1024, ("any",)),
        "humanizeDuration": Func(humanize_duration, ("any",)),
        "humanizePercentage": Func(humanize_percentage, ("any",)),
        "humanizeTimestamp": Func(humanize_timestamp, ("any",)),
        "toTime": Func(to_time, ("any",)),
        "pathPrefix": Func(url_func(lambda: parsed_url.path), ()),
        "externalURL": Func(url_func(lambda: external_url or ""), ()),
        "parseDuration": Func(_parse_duration, ("str",)),
    }


def check_alert_template(rule_name: str, text: str) -> str | None:
    """Parse-only check of a label or annotation template (``promtool check rules``); the error or None."""
    try:
        parse(f"__alert_{rule_name}", ALERT_DEFS + text, template_funcs(None, ""))
    except TemplateError as err:
        return str(err)
    return None


def expand_alert_text(
    rule_name: str,
    text: str,
    labels: Mapping[str, str],
    external_labels: Mapping[str, str],
    external_url: str,
    value: float,
    query: QueryFunc | None,
    url_for_funcs: str | None = "",
) -> str:
    """Expand one alert label value or annotation as Prometheus does; errors become the expansion.

    ``external_url`` is ``$externalURL``; ``url_for_funcs`` is what the ``externalURL``/``pathPrefix``
    functions see (None: promtool's test runner, where they fail).
    """
    name = f"__alert_{rule_name}"
    data = AlertData(dict(labels), dict(external_labels), external_url, value)
    try:
        tmpl = parse(name, ALERT_DEFS + text, template_funcs(query, url_for_funcs))
    except TemplateError as err:
        return f"<error expanding template: error parsing template {name}: {err}>"
    try:
        return tmpl.execute(data)
    except TemplateError as err:
        return f"<error expanding template: error executing template {name}: {err}>"
    except RecursionError:
        return f"<error expanding template: panic expanding template {name}: recursion>"
