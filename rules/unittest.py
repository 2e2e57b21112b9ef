"""``sotp rules test``: Prometheus's rule unit tests (``promtool test rules``), with promtool's output.

A test file names rule files and test groups; each group loads ``input_series`` (series notation, one
sample per ``interval`` from time 0), evaluates every rule group from 0 to the largest ``eval_time`` in
steps of ``evaluation_interval``, compares the firing alerts at each ``alert_rule_test`` time and, at the
end, the result of each ``promql_expr_test``. Samples are loaded lazily (only those at or before the
current step), rules are evaluated with the same :class:`rules.evaluation.Group` code as ``sotp ruler``,
and every message is worded and laid out as promtool 2.42 prints it, so both tools can be compared.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

import yaml

from query.engine import Engine
from query.seriesdesc import SeriesDescError, parse_series, parse_series_desc
from rules.durations import format_go_duration, format_go_time_duration, parse_go_duration
from rules.evaluation import AlertingRule, AlertState, EngineQuery, Group, RuleError, build_group
from rules.gofmt import format_float, go_quote
from rules.rulefile import RuleFileError, compose, load_rule_file
from sotp.model import Labels
from sotp.storage import Storage, open_storage

# ---- the test file, decoded like yaml.v2's UnmarshalStrict -------------------------------------------


class _Abort(Exception):
    pass


@dataclass
class _Dec:
    errors: list[str] = field(default_factory=list)

    def fail(self, node: yaml.Node, msg: str) -> None:
        self.errors.append(f"line {node.start_mark.line + 1}: {msg}")

    @staticmethod
    def is_null(node: yaml.Node) -> bool:
        return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"

    def fields(self, node: yaml.Node, type_name: str, known: set[str]) -> Iterator[tuple[str, yaml.Node]]:
        """A struct's known fields in the file's order, for the caller to decode one by one: yaml.v2 reports
        a repeated or unknown field when it reaches it, so errors come out in the file's order only if each
        value is decoded before the next key is looked at."""
        if self.is_null(node):
            return
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"cannot unmarshal {_tag(node)}{_short(node)} into {type_name}")
            return
        done: set[str] = set()
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else ""
            if key not in known:
                self.fail(k, f"field {key} not found in type {type_name}")
            elif key in done:
                self.fail(k, f"field {key} already set in type {type_name}")
            else:
                done.add(key)
                yield key, v

    def string(self, node: yaml.Node) -> str:
        if self.is_null(node):
            return ""
        if isinstance(node, yaml.ScalarNode):
            return str(node.value)
        self.fail(node, f"cannot unmarshal {_tag(node)} into string")
        return ""

    def duration(self, node: yaml.Node) -> int:
        if self.is_null(node):
            return 0
        before = len(self.errors)
        text = self.string(node)
        if len(self.errors) > before:  # the unmarshaler's own decode failed: a type error, decoding goes on
            return 0
        try:
            return parse_go_duration(text)
        except ValueError as err:
            raise _Abort(str(err)) from None

    def float_(self, node: yaml.Node) -> float:
        if self.is_null(node):
            return 0.0
        if isinstance(node, yaml.ScalarNode):
            v = node.value.strip()
            low = v.lower()
            specials = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"), ".nan": float("nan")}
            if low in specials:
                return specials[low]
            try:
                return float(int(v.replace("_", ""), 0))
            except ValueError:
                pass
            try:
                if node.tag in ("tag:yaml.org,2002:float", "tag:yaml.org,2002:int"):
                    return float(v.replace("_", ""))
            except ValueError:
                pass
        self.fail(node, f"cannot unmarshal {_tag(node)}{_short(node)} into float64")
        return 0.0

    def string_map(self, node: yaml.Node, type_name: str = "map[string]string") -> dict[str, str]:
        if self.is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"cannot unmarshal {_tag(node)}{_short(node)} into {type_name}")
            return {}
        out: dict[str, str] = {}
        for k, v in node.value:
            key = self.string(k)
            before = len(self.errors)
            value = self.string(v)
            if len(self.errors) > before:  # yaml.v2 decodes the value first and stores nothing on failure
                continue
            if key in out:
                # yaml.v2 strict, maps: reported at the line of the value (setMapIndex)
                self.fail(v, f'key "{key}" already set in map')
                continue
            out[key] = value
        return out

    def seq(self, node: yaml.Node, type_name: str) -> list[yaml.Node]:
        if self.is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, f"cannot unmarshal {_tag(node)}{_short(node)} into {type_name}")
            return []
        return list(node.value)


def _tag(node: yaml.Node) -> str:
    tag = node.tag
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org,2002:") else tag


def _short(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        v = node.value
        if len(v) > 10:
            v = v[:7] + "..."
        return f" `{v}`"
    return ""


@dataclass
class SeriesInput:
    series: str
    values: str


@dataclass
class ExpAlert:
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass
class AlertTest:
    eval_time_ms: int
    alertname: str
    exp_alerts: list[ExpAlert]


@dataclass
class ExpSample:
    labels: str
    value: float


@dataclass
class ExprTest:
    expr: str
    eval_time_ms: int
    exp_samples: list[ExpSample]


@dataclass
class TestGroup:
    interval_ms: int = 0
    input_series: list[SeriesInput] = field(default_factory=list)
    alert_rule_test: list[AlertTest] = field(default_factory=list)
    promql_expr_test: list[ExprTest] = field(default_factory=list)
    external_labels: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    name: str = ""


@dataclass
class TestFile:
    rule_files: list[str] = field(default_factory=list)
    evaluation_interval_ms: int = 0
    group_eval_order: list[str] = field(default_factory=list)
    tests: list[TestGroup] = field(default_factory=list)


def decode_test_file(text: str) -> TestFile:
    """Decode a unit-test file strictly; raises ValueError with yaml.v2's message."""
    try:
        root = compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        raise ValueError(f"yaml: line {mark.line + 1}: {problem}" if mark else f"yaml: {problem}") from None
    d = _Dec()
    tf = TestFile()
    if root is None:
        return tf
    try:
        for key, n in d.fields(root, "main.unitTestFile",
                               {"rule_files", "evaluation_interval", "group_eval_order", "tests"}):
            if key == "rule_files":
                tf.rule_files = [d.string(x) for x in d.seq(n, "[]string")]
            elif key == "evaluation_interval":
                tf.evaluation_interval_ms = d.duration(n)
            elif key == "group_eval_order":
                tf.group_eval_order = [d.string(x) for x in d.seq(n, "[]string")]
            else:
                tf.tests += [_decode_group(d, x) for x in d.seq(n, "[]main.testGroup")]
    except _Abort as err:
        raise ValueError(str(err)) from None
    if d.errors:
        raise ValueError("yaml: unmarshal errors:\n  " + "\n  ".join(d.errors))
    return tf


def _decode_group(d: _Dec, node: yaml.Node) -> TestGroup:
    tg = TestGroup()
    for key, n in d.fields(node, "main.testGroup", {"interval", "input_series", "alert_rule_test",
                                                     "promql_expr_test", "external_labels", "external_url", "name"}):
        if key == "interval":
            tg.interval_ms = d.duration(n)
        elif key == "input_series":
            tg.input_series += [_decode_series(d, sn) for sn in d.seq(n, "[]main.series")]
        elif key == "alert_rule_test":
            tg.alert_rule_test += [_decode_alert_test(d, an) for an in d.seq(n, "[]main.alertTestCase")]
        elif key == "promql_expr_test":
            tg.promql_expr_test += [_decode_expr_test(d, pn) for pn in d.seq(n, "[]main.promqlTestCase")]
        elif key == "external_labels":
            tg.external_labels = d.string_map(n, "labels.Labels")
        elif key == "external_url":
            tg.external_url = d.string(n)
        else:
            tg.name = d.string(n)
    return tg


def _decode_series(d: _Dec, node: yaml.Node) -> SeriesInput:
    s = SeriesInput("", "")
    for key, n in d.fields(node, "main.series", {"series", "values"}):
        if key == "series":
            s.series = d.string(n)
        else:
            s.values = d.string(n)
    return s


def _decode_alert_test(d: _Dec, node: yaml.Node) -> AlertTest:
    t = AlertTest(0, "", [])
    for key, n in d.fields(node, "main.alertTestCase", {"eval_time", "alertname", "exp_alerts"}):
        if key == "eval_time":
            t.eval_time_ms = d.duration(n)
        elif key == "alertname":
            t.alertname = d.string(n)
        else:
            for en in d.seq(n, "[]main.alert"):
                exp = ExpAlert({}, {})
                for ek, ev in d.fields(en, "main.alert", {"exp_labels", "exp_annotations"}):
                    if ek == "exp_labels":
                        exp.labels = d.string_map(ev)
                    else:
                        exp.annotations = d.string_map(ev)
                t.exp_alerts.append(exp)
    return t


def _decode_expr_test(d: _Dec, node: yaml.Node) -> ExprTest:
    t = ExprTest("", 0, [])
    for key, n in d.fields(node, "main.promqlTestCase", {"expr", "eval_time", "exp_samples"}):
        if key == "expr":
            t.expr = d.string(n)
        elif key == "eval_time":
            t.eval_time_ms = d.duration(n)
        else:
            for sn in d.seq(n, "[]main.sample"):
                sample = ExpSample("", 0.0)
                for sk, sv in d.fields(sn, "main.sample", {"labels", "value"}):
                    if sk == "labels":
                        sample.labels = d.string(sv)
                    else:
                        sample.value = d.float_(sv)
                t.exp_samples.append(sample)
    return t


# ---- formatting as promtool prints ------------------------------------------------------------------


def go_labels(pairs: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> str:
    """``labels.Labels.String()``: ``{__name__="up", job="x"}``."""
    return "{" + ", ".join(f"{k}={go_quote(v)}" for k, v in pairs) + "}"


def indent_lines(lines: str, indent: str) -> str:
    parts = lines.split("\n")
    return ("\n" + indent).join(parts)


def _alerts_string(items: list[tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]]) -> str:
    if not items:
        return "[]"

    def one(la: tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]) -> str:
        return "Labels:" + go_labels(la[0]) + "\nAnnotations:" + go_labels(la[1])

    s = "[\n0:" + indent_lines("\n" + one(items[0]), "  ")
    for i, la in enumerate(items[1:]):
        s += ",\n" + str(i + 1) + ":" + indent_lines("\n" + one(la), "  ")
    return s + "\n]"


def _samples_string(items: list[tuple[tuple[tuple[str, str], ...], float]]) -> str:
    if not items:
        return "nil"
    return ", ".join(go_labels(lb) + " " + format_float(v, "E") for lb, v in items)


def _float_eq(a: float, b: float) -> bool:
    return a == b  # reflect.DeepEqual: NaN never equals NaN


# ---- running ------------------------------------------------------------------------------------------


@dataclass
class _Loader:
    """promql's LazyLoader: input samples enter storage only up to the current evaluation time."""

    pending: dict[Labels, list[tuple[int, float]]]

    @staticmethod
    def build(tg: TestGroup) -> _Loader:
        pending: dict[Labels, list[tuple[int, float]]] = {}
        for s in tg.input_series:
            labels, values = parse_series_desc(f"{s.series} {s.values}")
            pts = [(i * tg.interval_ms, v) for i, v in enumerate(values) if v is not None]
            pending[labels] = pts
        return _Loader(pending)

    async def append_till(self, storage: Storage, ts: int) -> None:
        app = storage.appender()
        for labels, pts in self.pending.items():
            n = 0
            while n < len(pts) and pts[n][0] <= ts:
                n += 1
            if n:
                app.append_series(labels, [t for t, _ in pts[:n]], [v for _, v in pts[:n]])
                self.pending[labels] = pts[n:]
        await app.commit()


async def _instant(engine: Engine, expr: str, t_ms: int) -> list[tuple[Labels, float]]:
    return await EngineQuery(engine)(expr, t_ms)


def _resolve_rule_files(base: str, files: list[str], err: TextIO) -> list[str]:
    out: list[str] = []
    for rf in files:
        path = rf if (not rf or os.path.isabs(rf)) else os.path.normpath(os.path.join(base, rf))
        matches = sorted(glob.glob(path)) if path else []
        if not matches:
            print("  WARNING: no file match pattern", path, file=err)
        out.extend(matches)
    return out


def _load_groups(tf: TestFile, files: list[str], tg: TestGroup) -> tuple[list[Group], list[str]]:
    groups: list[Group] = []
    for fn in files:
        try:
            specs = load_rule_file(fn)
        except RuleFileError as e:
            return [], [f"{fn}: {x}" for x in e.errors]
        for spec in specs:
            group = build_group(spec, fn, tg.interval_ms, tg.external_labels, tg.external_url, True)
            for r in group.alerting_rules():
                r.url_for_funcs = None  # promtool's test runner passes a nil external URL to templates
            groups.append(group)
    order = {name: i for i, name in enumerate(tf.group_eval_order)}
    groups.sort(key=lambda g: order.get(g.name, 0))
    return groups, []


async def _run_test_group(tg: TestGroup, tf: TestFile, files: list[str], eval_interval_ms: int) -> list[str]:
    try:
        loader = _Loader.build(tg)
    except SeriesDescError as e:
        return [str(e)]
    storage = open_storage("memory://")
    await storage.open()
    try:
        return await _run_with_storage(tg, tf, files, eval_interval_ms, loader, storage)
    finally:
        await storage.close()


async def _run_with_storage(
    tg: TestGroup, tf: TestFile, files: list[str], eval_interval_ms: int, loader: _Loader, storage: Storage
) -> list[str]:
    engine = Engine(storage, timeout_s=100.0, max_samples=10_000, default_interval_ms=eval_interval_ms)
    query = EngineQuery(engine)
    groups, errs = _load_groups(tf, files, tg)
    if errs:
        return errs
    maxt = max([a.eval_time_ms for a in tg.alert_rule_test] + [p.eval_time_ms for p in tg.promql_expr_test] + [0])

    alert_times: dict[int, list[AlertTest]] = {}
    for at in tg.alert_rule_test:
        if not at.alertname:
            where = f" (in TestGroup {tg.name})" if tg.name else ""
            return [f"an item under alert_rule_test misses required attribute alertname at eval_time "
                    f"{format_go_duration(at.eval_time_ms)}{where}"]
        alert_times.setdefault(at.eval_time_ms, []).append(at)
    times = sorted(alert_times)
    curr = 0
    errs = []
    ts = 0
    while ts <= maxt:
        eval_errs: list[str] = []
        await loader.append_till(storage, ts)
        for g in groups:
            await g.eval(ts, query, storage)
            for r in g.rules:
                if r.status.last_error:
                    eval_errs.append(f"    rule: {r.name}, time: {format_go_time_duration(ts)}, "
                                     f"err: {r.status.last_error}")
        errs.extend(eval_errs)
        if eval_errs:
            return errs
        while curr < len(times) and ts <= times[curr] < ts + eval_interval_ms:
            t = times[curr]
            errs.extend(_check_alerts(tg, groups, alert_times[t]))
            curr += 1
        ts += eval_interval_ms

    for pt in tg.promql_expr_test:
        msg = await _check_expr(tg, engine, pt)
        if msg:
            errs.append(msg)
    return errs


def _check_alerts(tg: TestGroup, groups: list[Group], tests: list[AlertTest]) -> list[str]:
    names = {t.alertname for t in tests}
    got: dict[str, list[tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]]] = {}
    for g in groups:
        for r in g.rules:
            if isinstance(r, AlertingRule) and r.name in names:
                got.setdefault(r.name, []).extend(
                    (a.labels.items_tuple(), a.annotations) for a in r.active_alerts() if a.state == AlertState.FIRING
                )
    errs = []
    for t in tests:
        have = sorted(got.get(t.alertname, []))
        exp = sorted(
            (
                tuple(sorted({**e.labels, "alertname": t.alertname}.items())),
                tuple(sorted(e.annotations.items())),
            )
            for e in t.exp_alerts
        )
        if exp != have:
            head = f"    name: {tg.name},\n" if tg.name else ""
            errs.append(
                f"{head}    alertname: {t.alertname}, time: {format_go_duration(t.eval_time_ms)}, \n"
                f"        exp:{indent_lines(_alerts_string(exp), '            ')}, \n"
                f"        got:{indent_lines(_alerts_string(have), '            ')}"
            )
    return errs


async def _check_expr(tg: TestGroup, engine: Engine, pt: ExprTest) -> str | None:
    when = format_go_duration(pt.eval_time_ms)
    try:
        got_rows = await _instant(engine, pt.expr, pt.eval_time_ms)
    except RuleError as e:
        return f"    expr: {go_quote(pt.expr)}, time: {when}, err: {e}"
    exp: list[tuple[tuple[tuple[str, str], ...], float]] = []
    for s in pt.exp_samples:
        try:
            lb = parse_series(s.labels)
        except SeriesDescError as e:
            return f"    expr: {go_quote(pt.expr)}, time: {when}, err: labels {go_quote(s.labels)}: {e}"
        exp.append((lb.items_tuple(), s.value))
    got = [(lb.items_tuple(), v) for lb, v in got_rows]
    exp.sort(key=lambda x: x[0])
    got.sort(key=lambda x: x[0])
    same = len(exp) == len(got) and all(a[0] == b[0] and _float_eq(a[1], b[1]) for a, b in zip(exp, got, strict=True))
    if same:
        return None
    return (f"    expr: {go_quote(pt.expr)}, time: {when},\n"
            f"        exp: {_samples_string(exp)}\n"
            f"        got: {_samples_string(got)}")


async def rule_unit_test(filename: str, out: TextIO, err: TextIO) -> list[str]:
    """Run one test file; returns promtool's error texts (empty: success)."""
    print("Unit Testing: ", filename, file=out)
    try:
        with open(filename) as fh:
            text = fh.read()
    except OSError as e:
        return [f"open {filename}: {(e.strerror or str(e)).lower()}"]
    try:
        tf = decode_test_file(text)
    except ValueError as e:
        return [str(e)]
    files = _resolve_rule_files(os.path.dirname(filename) or ".", tf.rule_files, err)
    interval = tf.evaluation_interval_ms or 60_000
    seen: set[str] = set()
    for name in tf.group_eval_order:
        if name in seen:
            return [f"group name repeated in evaluation order: {name}"]
        seen.add(name)
    errs: list[str] = []
    for tg in tf.tests:
        errs.extend(await _run_test_group(tg, tf, files, interval))
    return errs


async def run_unit_tests(files: list[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """``promtool test rules FILE...``: prints per file; exit code 0 when every test passed, else 1."""
    failed = False
    quiet = logging.getLogger("rules")
    was = quiet.disabled
    quiet.disabled = True  # promtool runs rules with a no-op logger: failures show only in the report
    for f in files:
        quiet.disabled = True
        try:
            errs = await rule_unit_test(f, out, err)
        finally:
            quiet.disabled = was
        if errs:
            out.flush()
            print("  FAILED:", file=err)
            for e in errs:
                print(e, file=err)
                err.flush()
                print(file=out)
                out.flush()
            failed = True
        else:
            print("  SUCCESS", file=out)
        print(file=out)
    return 1 if failed else 0

