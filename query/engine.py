"""The PromQL engine: parse, plan every selector's window, fetch everything, then evaluate with numpy.

An evaluation context is the array of step timestamps (ms). Every node is evaluated once for all steps
(an instant query is a range query with one step); subqueries evaluate their inner expression once over
the union of the inner steps they need. Fetching happens before evaluation, through one
:class:`sotp.storage.Querier` opened over the union of all windows (Prometheus's "prefetch, then
evaluate").

Nothing CPU-bound runs on the event loop: the size limits, parsing, planning and evaluation run in the
query thread pool, at most ``concurrency`` queries at a time per engine (Prometheus's
``--query.max-concurrency``); waiting for a slot counts against the query's timeout. ``/-/healthy`` and
the receivers keep answering while a heavy query runs.

Memory is bounded by ``max_samples`` (``server.query_max_samples``) before anything is allocated: the
samples fetched (each select gets the remaining budget, see :class:`sotp.storage.SelectHints`), the inner
steps of every subquery, and every ``(series × steps)`` array a node produces, binary-operator matches
and ``count_values`` groups included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from query import ast
from query.aggregate import aggregate
from query.binop import scalar_scalar, vector_scalar, vector_vector
from query.errors import BadData, ExecutionError, QueryTimeout
from query.functions import (
    DATE_FUNCTIONS,
    MATH,
    apply_math,
    clamp,
    date_function,
    histogram_quantile,
    label_join,
    label_replace,
    round_,
)
from query.lex import QueryLimits
from query.parse import parse
from query.range_funcs import RANGE_ARG, RANGE_FUNCTIONS, Window
from query.values import F64, I64, B, Range, Scalar, String, Vector, drop_name, normalize
from sotp.errors import TooManySamples
from sotp.model import METRIC_NAME, Labels, Matcher, MatchOp, Series, stale_mask
from sotp.storage import SelectHints, Storage

LOOKBACK_MS = 300_000
DEFAULT_INTERVAL_MS = 60_000  # Prometheus's default evaluation_interval, used by `[r:]` subqueries


@dataclass
class MatrixValue:
    """A range vector as a query result (instant queries of ``x[5m]`` or a subquery)."""

    labels: list[Labels]
    ts: list[I64]
    vs: list[F64]


Value = Vector | Scalar | String | MatrixValue


@dataclass
class QueryResult:
    """An evaluated query: ``value`` over ``steps`` (ms); ``is_range`` for ``query_range``."""

    value: Value
    steps: I64
    is_range: bool
    samples: int = 0


@dataclass
class _Need:
    mint: int
    maxt: int
    range_use: bool


T = TypeVar("T")

#: Threads shared by every engine of the process; each engine admits ``concurrency`` queries at a time.
_POOL_SIZE = 16
_pool: ThreadPoolExecutor | None = None


def _query_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_POOL_SIZE, thread_name_prefix="sotp-query")
    return _pool


class _Gate:
    """The engine's concurrency limit: one semaphore per event loop (tests run several loops)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None

    def semaphore(self, size: int) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._sem is None or self._loop is not loop:
            self._loop, self._sem = loop, asyncio.Semaphore(size)
        return self._sem


@dataclass
class Engine:
    """Runs PromQL against a storage. ``extra_matchers`` (tenant isolation) go on every selector.

    Copies made with :func:`dataclasses.replace` (a smaller per-request timeout) share the gate.
    """

    storage: Storage
    timeout_s: float = 120.0
    max_samples: int = 50_000_000
    lookback_ms: int = LOOKBACK_MS
    default_interval_ms: int = DEFAULT_INTERVAL_MS
    limits: QueryLimits = field(default_factory=QueryLimits)
    concurrency: int = 4
    gate: _Gate = field(default_factory=_Gate, repr=False, compare=False)

    async def instant(self, query: str, t_ms: int, extra: list[Matcher] | None = None) -> QueryResult:
        return await self._run(query, np.array([t_ms], dtype=np.int64), t_ms, False, extra or [])

    async def range(
        self, query: str, start_ms: int, end_ms: int, step_ms: int, extra: list[Matcher] | None = None
    ) -> QueryResult:
        steps = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
        return await self._run(query, steps, end_ms, True, extra or [])

    def _parse(self, query: str, is_range: bool) -> ast.Expr:
        expr = parse(query, self.limits)
        if is_range and expr.type not in (ast.ValueType.SCALAR, ast.ValueType.VECTOR):
            kind = {"matrix": "range vector", "string": "string"}[expr.type.value]
            raise BadData(f'invalid expression type "{kind}" for range query, must be Scalar or instant Vector')
        return expr

    def _parse_and_plan(self, ev: Evaluator, query: str, is_range: bool, steps: I64) -> ast.Expr:
        expr = self._parse(query, is_range)
        ev.plan(expr, steps)
        return expr

    @asynccontextmanager
    async def _slot(self, deadline: float) -> AsyncIterator[None]:
        sem = self.gate.semaphore(max(1, self.concurrency))
        try:
            await asyncio.wait_for(sem.acquire(), timeout=max(deadline - time.monotonic(), 0.001))
        except TimeoutError:
            raise QueryTimeout("query timed out in query queue") from None
        try:
            yield
        finally:
            sem.release()

    async def off_loop(self, fn: Callable[..., T], *args: object) -> T:
        """Run CPU-bound query work (parsing, planning, evaluation) in the query thread pool."""
        return await asyncio.get_running_loop().run_in_executor(_query_pool(), fn, *args)

    async def _run(self, query: str, steps: I64, end_ms: int, is_range: bool, extra: list[Matcher]) -> QueryResult:
        deadline = time.monotonic() + self.timeout_s
        async with self._slot(deadline):
            # `@ end()` is the requested end, which the last step may not reach
            ev = Evaluator(self, int(steps[0]), end_ms, deadline)
            # parse and plan in one trip to the pool: each hop costs ~0.1 ms (more on a loaded machine),
            # which is a large share of a one-series query's few milliseconds
            expr = await self.off_loop(self._parse_and_plan, ev, query, is_range, steps)
            try:
                samples = await asyncio.wait_for(ev.fetch(extra), timeout=max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                raise QueryTimeout("query timed out in query execution while fetching series") from None
            value = await self.off_loop(ev.evaluate, expr, steps)
        return QueryResult(value, steps, is_range, samples)


@dataclass
class Evaluator:
    """One query's evaluation state: the planned windows, the fetched data, the time budget."""

    engine: Engine
    start_ms: int
    end_ms: int
    deadline: float
    needs: dict[int, _Need] = field(default_factory=dict)
    selectors: dict[int, ast.VectorSelector] = field(default_factory=dict)
    data: dict[int, Range] = field(default_factory=dict)

    # ---- planning -------------------------------------------------------------------------------
    def _eff(self, at: ast.At | None, offset_ms: int, steps: I64) -> I64:
        if at is None:
            return steps - offset_ms
        t = {ast.AtKind.TIME: at.t_ms, ast.AtKind.START: self.start_ms, ast.AtKind.END: self.end_ms}[at.kind]
        return np.full(len(steps), t - offset_ms, dtype=np.int64)

    def _subquery_steps(self, node: ast.Subquery, steps: I64) -> I64:
        eff = self._eff(node.at, node.offset_ms, steps)
        step = node.step_ms or self.engine.default_interval_ms
        if step <= 0:
            raise BadData("subquery step must be positive")
        lo = int(eff.min()) - node.range_ms
        first = -(-lo // step) * step  # the first multiple of step at or after lo
        last = int(eff.max())
        self._check_size(1, (last - first) // step + 1 if last >= first else 0, "subquery steps")
        return np.arange(first, last + 1, step, dtype=np.int64)

    def _need(self, sel: ast.VectorSelector, mint: int, maxt: int, range_use: bool) -> None:
        self.selectors[id(sel)] = sel
        cur = self.needs.get(id(sel))
        if cur is None:
            self.needs[id(sel)] = _Need(mint, maxt, range_use)
        else:
            cur.mint, cur.maxt = min(cur.mint, mint), max(cur.maxt, maxt)

    def plan(self, node: ast.Expr, steps: I64) -> None:
        """Record the time window every selector needs for evaluation over ``steps``."""
        if isinstance(node, ast.VectorSelector):
            eff = self._eff(node.at, node.offset_ms, steps)
            self._need(node, int(eff.min()) - self.engine.lookback_ms, int(eff.max()), False)
        elif isinstance(node, ast.MatrixSelector):
            eff = self._eff(node.selector.at, node.selector.offset_ms, steps)
            self._need(node.selector, int(eff.min()) - node.range_ms, int(eff.max()), True)
        elif isinstance(node, ast.Subquery):
            self.plan(node.expr, self._subquery_steps(node, steps))
        elif isinstance(node, ast.Paren | ast.Unary):
            self.plan(node.expr, steps)
        elif isinstance(node, ast.Call):
            for a in node.args:
                self.plan(a, steps)
        elif isinstance(node, ast.Aggregate):
            self.plan(node.expr, steps)
            if node.param is not None:
                self.plan(node.param, steps)
        elif isinstance(node, ast.Binary):
            self.plan(node.lhs, steps)
            self.plan(node.rhs, steps)

    async def fetch(self, extra: list[Matcher]) -> int:
        """Select every planned selector through one querier; returns the number of samples loaded."""
        if not self.needs:
            return 0
        mint = min(n.mint for n in self.needs.values())
        maxt = max(n.maxt for n in self.needs.values())
        total = 0
        querier = self.engine.storage.querier(mint, maxt)
        try:
            for key, need in self.needs.items():
                sel = self.selectors[key]
                hints = SelectHints(start_ms=need.mint, end_ms=need.maxt, max_samples=self.engine.max_samples - total)
                try:
                    series = await querier.select([*sel.matchers, *extra], hints)
                except TooManySamples:
                    raise ExecutionError(self._too_many()) from None
                series = [_clip(s, need.mint, need.maxt) for s in series]
                rng = Range.from_series([s for s in series if len(s.timestamps)], drop_stale=need.range_use)
                total += len(rng.ts)
                if total > self.engine.max_samples:
                    raise ExecutionError(self._too_many())
                self.data[key] = rng
        finally:
            await querier.close()
        return total

    # ---- evaluation -----------------------------------------------------------------------------
    def evaluate(self, expr: ast.Expr, steps: I64) -> Value:
        try:
            with np.errstate(all="ignore"):  # Inf/NaN maths is PromQL semantics, not an error
                if isinstance(ast.unwrap_parens(expr), ast.MatrixSelector | ast.Subquery):
                    return self._matrix_value(ast.unwrap_parens(expr), steps)
                return self.eval(expr, steps)
        except RecursionError:  # the depth limit keeps queries far from this; a safety net, not a path
            raise BadData("query is nested too deeply to evaluate (server.query_max_depth)") from None

    def _too_many(self, detail: str = "") -> str:
        return (f"query processing would load too many samples into memory in query execution ({detail}"
                f"limit server.query_max_samples = {self.engine.max_samples})")

    def _check_size(self, k: int, n: int, what: str = "steps") -> None:
        """Refuse (series × steps) arrays beyond the sample limit before allocating them."""
        if k * n > self.engine.max_samples:
            raise ExecutionError(self._too_many(f"{k} series x {n} {what}, "))

    def _check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise QueryTimeout("query timed out in expression evaluation")

    def eval(self, node: ast.Expr, steps: I64) -> Vector | Scalar | String:
        self._check_deadline()
        n = len(steps)
        if isinstance(node, ast.NumberLiteral):
            return Scalar(np.full(n, node.val))
        if isinstance(node, ast.StringLiteral):
            return String(node.val)
        if isinstance(node, ast.Paren):
            return self.eval(node.expr, steps)
        if isinstance(node, ast.Unary):
            v = self.eval(node.expr, steps)
            if isinstance(v, Scalar):
                return Scalar(-v.values)
            assert isinstance(v, Vector)
            return normalize(Vector(drop_name(v.labels), -v.values, v.present))
        if isinstance(node, ast.VectorSelector):
            return self._selector(node, steps)
        if isinstance(node, ast.Call):
            return self._call(node, steps)
        if isinstance(node, ast.Aggregate):
            return self._aggregate(node, steps)
        if isinstance(node, ast.Binary):
            return self._binary(node, steps)
        raise BadData(f"expression of type {node.type.value} is not allowed here")

    def _scalar(self, node: ast.Expr, steps: I64) -> F64:
        v = self.eval(node, steps)
        if not isinstance(v, Scalar):
            raise ExecutionError(f"expected a scalar, got {node.type.value}")
        return v.values

    def _vector(self, node: ast.Expr, steps: I64) -> Vector:
        v = self.eval(node, steps)
        if not isinstance(v, Vector):
            raise ExecutionError(f"expected an instant vector, got {node.type.value}")
        return v

    def _selector(self, node: ast.VectorSelector, steps: I64) -> Vector:
        rng = self.data[id(node)]
        n, k = len(steps), len(rng.labels)
        if k == 0:
            return Vector.empty(n)
        self._check_size(k, n)
        eff = self._eff(node.at, node.offset_ms, steps)
        idx = rng.search(eff, "right") - 1
        row_start = rng.starts[:-1][:, None]
        ok = idx >= row_start
        safe = np.where(ok, idx, 0)
        ts = rng.ts[safe]
        vs = rng.vs[safe]
        ok &= (ts >= (eff - self.engine.lookback_ms)[None, :]) & ~stale_mask(vs)
        return Vector(list(rng.labels), vs, ok, sample_ts=ts)

    # ---- range vectors ----------------------------------------------------------------------------
    def _window(self, node: ast.Expr, steps: I64, args: list[F64]) -> tuple[Window, list[Labels]]:
        node = ast.unwrap_parens(node)
        if isinstance(node, ast.MatrixSelector):
            sel = node.selector
            rng = self.data[id(sel)]
            at, offset, range_ms = sel.at, sel.offset_ms, node.range_ms
        elif isinstance(node, ast.Subquery):
            rng = self._subquery_range(node, steps)
            at, offset, range_ms = node.at, node.offset_ms, node.range_ms
        else:
            raise ExecutionError(f"expected a range vector, got {node.type.value}")
        self._check_size(len(rng.labels), len(steps))
        end = self._eff(at, offset, steps)
        lo, hi = rng.windows(end - range_ms, end)
        enh = steps if at is None else np.full(len(steps), self.start_ms, dtype=np.int64)
        return Window(rng, lo, hi, end, range_ms, enh, args), rng.labels

    def _subquery_range(self, node: ast.Subquery, steps: I64) -> Range:
        inner_steps = self._subquery_steps(node, steps)
        if len(inner_steps) == 0:
            return Range([], np.zeros(0, np.int64), np.zeros(0), np.zeros(1, np.int64))
        inner = self._vector(node.expr, inner_steps)
        rows = np.flatnonzero(inner.present.any(axis=1))
        pres = inner.present[rows]
        ts = np.broadcast_to(inner_steps[None, :], pres.shape)[pres]
        vs = inner.values[rows][pres]
        starts = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(pres.sum(axis=1), out=starts[1:])
        return Range([inner.labels[i] for i in rows], ts.astype(np.int64), vs.astype(np.float64), starts)

    def _matrix_value(self, node: ast.Expr, steps: I64) -> MatrixValue:
        w, labels = self._window(node, steps, [])
        lo, hi = w.lo[:, 0], w.hi[:, 0]
        keep = [i for i in range(len(labels)) if hi[i] > lo[i]]
        return MatrixValue(
            [labels[i] for i in keep],
            [w.rng.ts[lo[i] : hi[i]] for i in keep],
            [w.rng.vs[lo[i] : hi[i]] for i in keep],
        )

    # ---- functions --------------------------------------------------------------------------------
    def _call(self, node: ast.Call, steps: I64) -> Vector | Scalar:
        name, args = node.func, node.args
        n = len(steps)
        if name in RANGE_FUNCTIONS:
            pos = RANGE_ARG.get(name, 0)
            scalars = [self._scalar(a, steps) for i, a in enumerate(args) if i != pos]
            w, labels = self._window(args[pos], steps, scalars)
            values, present = RANGE_FUNCTIONS[name](w)
            out_labels = labels if name == "last_over_time" else drop_name(labels)
            rows = np.flatnonzero(present.any(axis=1))
            out = Vector([out_labels[i] for i in rows], values[rows], present[rows])
            if len(set(out.labels)) != len(out.labels):
                raise ExecutionError("vector cannot contain metrics with the same labelset")
            return out
        if name == "absent_over_time":
            w, _ = self._window(args[0], steps, [])
            any_present = np.asarray((w.hi > w.lo).any(axis=0) if len(w.rng.labels) else np.zeros(n), dtype=bool)
            return self._absent(args[0], ~any_present, n)
        if name == "absent":
            v = self._vector(args[0], steps)
            seen = np.asarray(v.present.any(axis=0), dtype=bool)
            return self._absent(args[0], ~seen, n)
        if name == "time":
            return Scalar(steps / 1000.0)
        if name == "pi":
            return Scalar(np.full(n, np.pi))
        if name == "vector":
            return Vector([Labels.from_sorted(())], self._scalar(args[0], steps)[None, :].copy(), np.ones((1, n), bool))
        if name == "scalar":
            v = self._vector(args[0], steps)
            count = v.present.sum(axis=0)
            idx = np.argmax(v.present, axis=0) if len(v) else np.zeros(n, dtype=np.intp)
            vals = v.values[idx, np.arange(n)] if len(v) else np.full(n, np.nan)
            return Scalar(np.where(count == 1, vals, np.nan))
        if name == "timestamp":
            arg = ast.unwrap_parens(args[0])
            v = self._vector(args[0], steps)
            if isinstance(arg, ast.VectorSelector) and v.sample_ts is not None:
                ts = v.sample_ts / 1000.0
            else:
                ts = np.broadcast_to(steps[None, :] / 1000.0, v.values.shape)
            return normalize(Vector(drop_name(v.labels), np.array(ts, dtype=np.float64), v.present))
        if name in ("sort", "sort_desc"):
            v = self._vector(args[0], steps)
            if n != 1 or not len(v):
                return v
            col = v.values[:, 0]
            nan = np.isnan(col)
            order = np.argsort(np.where(nan, 0.0, col if name == "sort" else -col), kind="stable")
            # NaN sorts last in both directions in Prometheus 2.42 (its Less puts every value before NaN)
            nan_last = np.concatenate([order[~nan[order]], order[nan[order]]])
            out = v.select_rows(nan_last)
            out.ordered = True
            return out
        if name in MATH:
            return apply_math(name, self._vector(args[0], steps))
        if name == "round":
            to = self._scalar(args[1], steps) if len(args) > 1 else np.ones(n)
            return round_(self._vector(args[0], steps), to)
        if name in ("clamp", "clamp_min", "clamp_max"):
            v = self._vector(args[0], steps)
            if name == "clamp":
                return clamp(v, self._scalar(args[1], steps), self._scalar(args[2], steps))
            s = self._scalar(args[1], steps)
            return clamp(v, s, None) if name == "clamp_min" else clamp(v, None, s)
        if name in DATE_FUNCTIONS:
            if args:
                v = self._vector(args[0], steps)
            else:
                v = Vector([Labels.from_sorted(())], (steps / 1000.0)[None, :], np.ones((1, n), bool))
            return normalize(Vector(drop_name(v.labels), date_function(name, v.values), v.present))
        if name == "label_replace":
            v = self._vector(args[0], steps)
            dst, repl, src, regex = (self._string(a) for a in args[1:5])
            return label_replace(v, dst, repl, src, regex)
        if name == "label_join":
            v = self._vector(args[0], steps)
            strs = [self._string(a) for a in args[1:]]
            return label_join(v, strs[0], strs[1], strs[2:])
        if name == "histogram_quantile":
            return histogram_quantile(self._scalar(args[0], steps), self._vector(args[1], steps))
        raise BadData(f"function {name}() is not supported by SOTP")

    def _string(self, node: ast.Expr) -> str:
        node = ast.unwrap_parens(node)
        if not isinstance(node, ast.StringLiteral):
            raise ExecutionError("expected a string literal argument")
        return node.val

    def _absent(self, arg: ast.Expr, absent: B, n: int) -> Vector:
        labels: dict[str, str] = {}
        sel = arg.selector if isinstance(arg, ast.MatrixSelector) else arg
        if isinstance(sel, ast.VectorSelector):
            # replay 2.42's label builder in matcher order: the first equality matcher of a name sets it
            # (an empty value deletes), any other matcher deletes it, and a later set wins over a delete
            seen: set[str] = set()
            for m in sel.matchers:
                if m.name == METRIC_NAME:
                    continue
                if m.op is MatchOp.EQ and m.name not in seen and m.value:
                    labels[m.name] = m.value
                else:
                    labels.pop(m.name, None)
                if m.op is MatchOp.EQ:
                    seen.add(m.name)
        if not absent.any():
            return Vector.empty(n)
        return Vector([Labels(labels)], np.ones((1, n)), absent[None, :].copy())

    # ---- operators ----------------------------------------------------------------------------------
    def _aggregate(self, node: ast.Aggregate, steps: I64) -> Vector:
        param: F64 | str | None = None
        if node.op == "count_values":
            assert node.param is not None
            param = self._string(node.param)
        elif node.param is not None:
            param = self._scalar(node.param, steps)
        vec = self._vector(node.expr, steps)
        return aggregate(node.op, vec, param, node.grouping, node.without, self._check_size)

    def _binary(self, node: ast.Binary, steps: I64) -> Vector | Scalar:
        lhs = self.eval(node.lhs, steps)
        rhs = self.eval(node.rhs, steps)
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            return scalar_scalar(node.op, lhs.values, rhs.values)
        if isinstance(lhs, Vector) and isinstance(rhs, Scalar):
            return vector_scalar(node, lhs, rhs.values, scalar_left=False)
        if isinstance(lhs, Scalar) and isinstance(rhs, Vector):
            return vector_scalar(node, rhs, lhs.values, scalar_left=True)
        if isinstance(lhs, Vector) and isinstance(rhs, Vector):
            return vector_vector(node, lhs, rhs, self._check_size)
        raise ExecutionError(f"invalid operands for binary operator {node.op}")


def _clip(s: Series, mint: int, maxt: int) -> Series:
    """Restrict a series to ``[mint, maxt]`` (the querier's window is the union of all selectors)."""
    ts = s.timestamps
    if len(ts) and (ts[0] < mint or ts[-1] > maxt):
        lo = int(np.searchsorted(ts, mint, "left"))
        hi = int(np.searchsorted(ts, maxt, "right"))
        return Series(s.labels, ts[lo:hi], s.values[lo:hi])
    return s
