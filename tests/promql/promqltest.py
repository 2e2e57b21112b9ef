"""A runner for Prometheus's promqltest script format, against any SOTP storage backend.

Supported directives (one per line, ``#`` comments):

* ``load <interval>`` then indented ``<series> <values>`` lines; values use the expanding notation
  ``a+bxN`` / ``a-bxN`` (N+1 values), ``axN`` (N+1 copies), ``_`` (no sample), ``_xN`` (N gaps),
  ``stale``, ``Inf``, ``NaN``. Sample i is at ``i * interval`` since the Unix epoch.
* ``clear`` — drop all data.
* ``eval instant at <time> <expr>`` / ``eval_ordered instant at ...`` / ``eval_fail instant at ...``
  followed by expected lines ``<series> <value>`` (or a bare ``<value>`` for a scalar result).
* ``eval range from <t> to <t> step <d> <expr>`` (and ``eval_fail range ...``) followed by
  ``<series> <values>`` lines in the expanding notation, one value per step (``_`` = no point).

Values compare with a relative tolerance of 1e-6 (promqltest's), NaN equals NaN. Unknown directives
raise :class:`ScriptError` naming the file and line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from query.engine import Engine, MatrixValue, QueryResult
from query.errors import BadData, ExecutionError
from query.params import parse_duration_ms
from query.seriesdesc import NUMBER, SERIES_LINE, SeriesDescError, expand_values, parse_number, parse_series
from query.values import Scalar, String, Vector
from sotp.model import Labels
from sotp.storage import Storage

EPSILON = 1e-6


class ScriptError(Exception):
    """A malformed script line."""


@dataclass
class Load:
    line: int
    interval_ms: int
    series: list[tuple[Labels, list[float | None]]]


@dataclass
class Clear:
    line: int


@dataclass
class Eval:
    line: int
    expr: str
    start_ms: int
    end_ms: int = 0
    step_ms: int = 0
    is_range: bool = False
    fail: bool = False
    ordered: bool = False
    expected: list[tuple[Labels | None, list[float | None]]] = field(default_factory=list)

    @property
    def title(self) -> str:
        kind = "range" if self.is_range else "instant"
        return f"{'eval_fail' if self.fail else 'eval'} {kind}: {self.expr}"


Command = Load | Clear | Eval

_SERIES_LINE = SERIES_LINE
_NUMBER = NUMBER
_number = parse_number


def _time(text: str) -> int:
    return parse_duration_ms(text, "time")


_EVAL = re.compile(
    r"^(eval|eval_fail|eval_ordered)\s+(?:instant\s+at\s+(\S+)|range\s+from\s+(\S+)\s+to\s+(\S+)\s+step\s+(\S+))\s+(.+)$"
)


def parse_script(text: str, name: str = "<script>") -> list[Command]:
    lines = text.splitlines()
    cmds: list[Command] = []
    i = 0

    def body(start: int) -> tuple[list[tuple[int, str]], int]:
        j, out = start, []
        while j < len(lines) and lines[j].strip() and not lines[j].lstrip().startswith("#") and lines[j][0] in " \t":
            out.append((j + 1, lines[j]))
            j += 1
        return out, j

    while i < len(lines):
        raw = lines[i]
        s = raw.strip()
        if not s or s.startswith("#"):
            i += 1
            continue
        lineno = i + 1
        try:
            if s.startswith("load "):
                interval = _time(s.split(None, 1)[1].strip())
                rows, i = body(i + 1)
                defs: dict[Labels, list[float | None]] = {}
                for _, row in rows:
                    m = _SERIES_LINE.match(row)
                    if not m:
                        raise ScriptError(f"invalid load line {row.strip()!r}")
                    # a series defined twice in one load keeps its last definition, as in promqltest
                    defs[parse_series(m.group(1))] = expand_values(m.group(2))
                cmds.append(Load(lineno, interval, list(defs.items())))
                continue
            if s == "clear":
                cmds.append(Clear(lineno))
                i += 1
                continue
            m = _EVAL.match(s)
            if not m:
                raise ScriptError(f"unknown directive {s!r}")
            kind, at, start, end, step, expr = m.groups()
            ev = Eval(lineno, expr.strip(), 0, fail=kind == "eval_fail", ordered=kind == "eval_ordered")
            if at is not None:
                ev.start_ms = ev.end_ms = _time(at)
            else:
                ev.is_range = True
                ev.start_ms, ev.end_ms, ev.step_ms = _time(start), _time(end), _time(step)
            rows, i = body(i + 1)
            for _, row in rows:
                r = row.strip()
                if re.fullmatch(_NUMBER, r):
                    ev.expected.append((None, [_number(r)]))
                    continue
                m2 = _SERIES_LINE.match(row)
                if not m2:
                    raise ScriptError(f"invalid expected line {r!r}")
                ev.expected.append((parse_series(m2.group(1)), expand_values(m2.group(2))))
            cmds.append(ev)
        except (ScriptError, SeriesDescError, BadData) as err:
            raise ScriptError(f"{name}:{lineno}: {err}") from None
    return cmds


def _close(want: float | None, got: float) -> bool:
    if want is None:
        return False
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    if want == got:
        return True
    return abs(want - got) <= EPSILON * max(abs(want), abs(got)) or abs(want - got) < 1e-12


def _actual(res: QueryResult) -> list[tuple[Labels | None, list[tuple[int, float]]]]:
    v = res.value
    steps = res.steps.tolist()
    if isinstance(v, Scalar):
        return [(None, list(zip(steps, v.values.tolist(), strict=True)))]
    if isinstance(v, String):
        raise ScriptError("string results are not comparable in scripts")
    if isinstance(v, MatrixValue):
        triples = zip(v.labels, v.ts, v.vs, strict=True)
        return [(lb, list(zip(t.tolist(), x.tolist(), strict=True))) for lb, t, x in triples]
    assert isinstance(v, Vector)
    out = []
    rows = range(len(v.labels))
    for i in rows:
        pts = [(steps[j], float(v.values[i, j])) for j in np.flatnonzero(v.present[i])]
        if pts:
            out.append((v.labels[i], pts))
    return out


def check(ev: Eval, res: QueryResult) -> str | None:
    """Compare a result with the expectation; a message when they differ."""
    got = _actual(res)
    if isinstance(res.value, Scalar) and not res.is_range:
        if len(ev.expected) != 1 or ev.expected[0][0] is not None:
            return f"got scalar {got[0][1][0][1]}, expected {ev.expected}"
        want = ev.expected[0][1][0]
        val = got[0][1][0][1]
        return None if _close(want, val) else f"scalar: want {want}, got {val}"
    if isinstance(res.value, Scalar):  # range query over a scalar: one series with no labels
        got = [(Labels(), pts) for _, pts in got]
    want = {lb if lb is not None else Labels(): vals for lb, vals in ev.expected}
    have = {lb if lb is not None else Labels(): pts for lb, pts in got}
    if len(have) != len(got):
        return "result has duplicate label sets"
    if want.keys() != have.keys():
        miss = [str(x) for x in want.keys() - have.keys()]
        extra = [f"{x} {have[x][:3]}" for x in have.keys() - want.keys()]
        return f"series differ: missing {miss}, unexpected {extra}"
    for lb, pts in have.items():
        vals = want[lb]
        if ev.is_range:
            steps = list(range(ev.start_ms, ev.end_ms + 1, ev.step_ms))
            expected = [(t, v) for t, v in zip(steps, vals, strict=False) if v is not None]
            if len(vals) != len(steps):
                return f"{lb}: expectation has {len(vals)} values for {len(steps)} steps"
            if [t for t, _ in expected] != [t for t, _ in pts]:
                return f"{lb}: points at {[t for t, _ in pts]}, expected at {[t for t, _ in expected]}"
            for (t, w), (_, g) in zip(expected, pts, strict=True):
                if not _close(w, g):
                    return f"{lb} at {t / 1000}s: want {w}, got {g}"
        elif isinstance(res.value, MatrixValue):
            if len(vals) != len(pts) or not all(_close(w, g) for w, (_, g) in zip(vals, pts, strict=True)):
                return f"{lb}: want {vals}, got {[g for _, g in pts]}"
        else:
            if len(vals) != 1:
                return f"{lb}: instant expectation needs exactly one value"
            if not _close(vals[0], pts[0][1]):
                return f"{lb}: want {vals[0]}, got {pts[0][1]}"
    if ev.ordered:
        order_got = [lb for lb, _ in got]
        order_want = [lb if lb is not None else Labels() for lb, _ in ev.expected]
        if order_got != order_want:
            return f"order: want {[str(x) for x in order_want]}, got {[str(x) for x in order_got]}"
    return None


async def run_script(cmds: list[Command], new_storage: StorageFactory) -> dict[int, str | None]:
    """Run every command; returns eval line → failure message (None = pass)."""
    results: dict[int, str | None] = {}
    storage = await new_storage()
    try:
        for cmd in cmds:
            if isinstance(cmd, Clear):
                await storage.close()
                storage = await new_storage()
            elif isinstance(cmd, Load):
                app = storage.appender()
                for labels, values in cmd.series:
                    ts = [i * cmd.interval_ms for i, v in enumerate(values) if v is not None]
                    vs = [v for v in values if v is not None]
                    if ts:
                        app.append_series(labels, ts, vs)
                await app.commit()
            else:
                results[cmd.line] = await _run_eval(cmd, storage)
    finally:
        await storage.close()
    return results


async def _run_eval(ev: Eval, storage: Storage) -> str | None:
    engine = Engine(storage, timeout_s=30)
    try:
        if ev.is_range:
            res = await engine.range(ev.expr, ev.start_ms, ev.end_ms, ev.step_ms)
        else:
            res = await engine.instant(ev.expr, ev.start_ms)
    except (BadData, ExecutionError) as err:
        return None if ev.fail else f"unexpected error: {type(err).__name__}: {err}"
    except Exception as err:  # a crash is a failure of this line, not of the whole script
        return f"engine crashed: {type(err).__name__}: {err}"
    if ev.fail:
        return "expected an error, got a result"
    try:
        return check(ev, res)
    except ScriptError as err:
        return str(err)


from collections.abc import Awaitable, Callable  # noqa: E402

StorageFactory = Callable[[], Awaitable[Storage]]


def load_file(path: Path) -> list[Command]:
    return parse_script(path.read_text(), path.name)
