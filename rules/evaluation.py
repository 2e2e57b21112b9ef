"""Rule evaluation with Prometheus 2.42's semantics: recording rules, alerting rules, groups.

A :class:`Group` evaluates its rules in order at one timestamp. Each rule runs an instant query through
:class:`RuleQuery` (the engine over the one Querier) and its result is committed through the one Appender
before the next rule runs, so a later rule of the group sees an earlier one's output at the same time.
A series a rule produced last time and not this time gets a staleness marker. Alerting rules keep
per-label-set state (inactive → pending → firing, ``keep_firing_for``, 15 minutes of resolved history),
write ``ALERTS``/``ALERTS_FOR_STATE`` once their ``for`` state is restored, and hand alerts to a notify
function. All times are int milliseconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from query.engine import Engine
from query.errors import QueryError
from query.values import Scalar, Vector
from rules.rulefile import GroupSpec, RuleSpec
from rules.templating import expand_alert_text
from sotp.errors import SampleRejected, StorageError
from sotp.model import STALE_NAN, Labels, Matcher, MatchOp, Series, is_stale
from sotp.storage import Appender, SelectHints, Storage

log = logging.getLogger("rules")

ALERT_METRIC = "ALERTS"
ALERT_FOR_STATE_METRIC = "ALERTS_FOR_STATE"
RESOLVED_RETENTION_MS = 15 * 60_000
DUPLICATE = "duplicate sample for timestamp"

Sample = tuple[Labels, float]


class RuleError(Exception):
    """A rule evaluation failed; the message is what Prometheus reports as ``lastError``."""


class RuleQuery(Protocol):
    """An instant query at ``t_ms`` returning ``(labels, value)`` rows (scalars as one unlabelled row)."""

    async def __call__(self, expr: str, t_ms: int) -> list[Sample]: ...


@dataclass
class EngineQuery:
    """:class:`RuleQuery` over SOTP's PromQL engine; ``extra`` matchers (a tenant) go on every selector."""

    engine: Engine
    extra: list[Matcher] = field(default_factory=list)

    async def __call__(self, expr: str, t_ms: int) -> list[Sample]:
        try:
            res = await self.engine.instant(expr, t_ms, self.extra)
        except QueryError as err:
            raise RuleError(str(err)) from None
        v = res.value
        if isinstance(v, Scalar):
            return [(Labels(), float(v.values[0]))]
        if not isinstance(v, Vector):
            raise RuleError("rule result is not a vector or scalar")
        if not v.labels:
            return []
        col = v.values[:, 0].tolist()
        return [(v.labels[i], col[i]) for i in np.flatnonzero(v.present[:, 0]).tolist()]


class Health(enum.StrEnum):
    UNKNOWN = "unknown"
    GOOD = "ok"
    BAD = "err"


class AlertState(enum.IntEnum):
    INACTIVE = 0
    PENDING = 1
    FIRING = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass
class Alert:
    """One alert of an alerting rule (one output label set). Times in ms; 0 means unset."""

    state: AlertState
    labels: Labels
    annotations: tuple[tuple[str, str], ...]
    value: float
    active_at: int
    fired_at: int = 0
    resolved_at: int = 0
    last_sent_at: int = 0
    valid_until: int = 0
    keep_firing_since: int = 0

    def needs_sending(self, ts: int, resend_delay_ms: int) -> bool:
        if self.state == AlertState.PENDING:
            return False
        if self.resolved_at > self.last_sent_at:
            return True
        return self.last_sent_at + resend_delay_ms < ts


#: Receives the alerts an evaluation decided to send: ``(rule expression, alerts)``.
NotifyFunc = Callable[[str, list[Alert]], None]


@dataclass
class RuleStatus:
    """What the API reports about a rule's last evaluation."""

    health: Health = Health.UNKNOWN
    last_error: str = ""
    evaluation_s: float = 0.0
    last_evaluation: float = 0.0  # wall-clock seconds; 0 = never


@dataclass
class RecordingRule:
    """``record:`` — writes the expression's result under a new metric name (plus ``labels``)."""

    name: str
    expr: str
    labels: dict[str, str]
    status: RuleStatus = field(default_factory=RuleStatus)

    def key(self) -> str:
        return self.name + _go_labels(sorted(self.labels.items()))

    async def eval(self, ts: int, query: RuleQuery, limit: int) -> list[Sample]:
        vector = await query(self.expr, ts)
        out: list[Sample] = []
        seen: set[Labels] = set()
        set_labels = {"__name__": self.name, **self.labels}
        for lb, v in vector:
            new = lb.merged(set_labels)
            if new in seen:
                raise RuleError("vector contains metrics with the same labelset after applying rule labels")
            seen.add(new)
            out.append((new, v))
        if limit > 0 and len(out) > limit:
            raise RuleError(f"exceeded limit of {limit} with {len(out)} series")
        return out


@dataclass
class AlertingRule:
    """``alert:`` — one alert per output label set, with Prometheus's state machine."""

    name: str
    expr: str
    hold_ms: int
    keep_firing_for_ms: int
    labels: dict[str, str]
    annotations: dict[str, str]
    external_labels: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    restored: bool = False
    #: the URL the ``externalURL``/``pathPrefix`` template functions see; None in unit tests (as promtool)
    url_for_funcs: str | None = ""
    active: dict[Labels, Alert] = field(default_factory=dict)
    status: RuleStatus = field(default_factory=RuleStatus)

    def key(self) -> str:
        return self.name + _go_labels(sorted(self.labels.items()))

    def _uses_query(self) -> bool:
        return any("query" in t for t in (*self.labels.values(), *self.annotations.values()))

    async def eval(self, ts: int, query: RuleQuery, limit: int) -> list[Sample]:
        res = await query(self.expr, ts)
        if self._uses_query() and res:
            # templates may call `query`: expand in a thread that asks this loop to run the queries
            loop = asyncio.get_running_loop()

            def sync_query(q: str) -> list[tuple[dict[str, str], float]]:
                fut = asyncio.run_coroutine_threadsafe(query(q, ts), loop)
                try:
                    return [(dict(lb.items_tuple()), v) for lb, v in fut.result()]
                except RuleError as err:
                    raise RuntimeError(str(err)) from None

            built = await asyncio.to_thread(self._build_alerts, res, ts, sync_query)
        else:
            built = self._build_alerts(res, ts, None)
        return self._update(built, ts, limit)

    def _build_alerts(
        self, res: list[Sample], ts: int, query: Callable[[str], list[tuple[dict[str, str], float]]] | None
    ) -> dict[Labels, Alert]:
        alerts: dict[Labels, Alert] = {}
        for lb, v in res:
            data = dict(lb.items_tuple())

            def expand(text: str, data: dict[str, str] = data, v: float = v) -> str:
                if "{{" not in text:
                    return text
                return expand_alert_text(self.name, text, data, self.external_labels, self.external_url, v, query,
                                         self.url_for_funcs)

            d = dict(lb.without("__name__").items_tuple())
            for k, text in sorted(self.labels.items()):
                d[k] = expand(text)
            d["alertname"] = self.name
            labels = Labels(d)
            annotations = tuple((k, expand(text)) for k, text in sorted(self.annotations.items()))
            if labels in alerts:
                raise RuleError("vector contains metrics with the same labelset after applying alert labels")
            alerts[labels] = Alert(AlertState.PENDING, labels, annotations, v, ts)
        return alerts

    def _update(self, alerts: dict[Labels, Alert], ts: int, limit: int) -> list[Sample]:
        for h, a in alerts.items():
            cur = self.active.get(h)
            if cur is not None and cur.state != AlertState.INACTIVE:
                cur.value = a.value
                cur.annotations = a.annotations
                continue
            self.active[h] = a
        out: list[Sample] = []
        num_active = 0
        for fp, a in list(self.active.items()):
            if fp not in alerts:
                keep_firing = False
                if a.state == AlertState.FIRING and self.keep_firing_for_ms > 0:
                    if a.keep_firing_since == 0:
                        a.keep_firing_since = ts
                    if ts - a.keep_firing_since < self.keep_firing_for_ms:
                        keep_firing = True
                if a.state == AlertState.PENDING or (a.resolved_at and ts - a.resolved_at > RESOLVED_RETENTION_MS):
                    del self.active[fp]
                if a.state != AlertState.INACTIVE and not keep_firing:
                    a.state = AlertState.INACTIVE
                    a.resolved_at = ts
                if not keep_firing:
                    continue
            else:
                a.keep_firing_since = 0
            num_active += 1
            if a.state == AlertState.PENDING and ts - a.active_at >= self.hold_ms:
                a.state = AlertState.FIRING
                a.fired_at = ts
            if self.restored:
                out.append((self._series(a, ALERT_METRIC, str(a.state)), 1.0))
                out.append((self._series(a, ALERT_FOR_STATE_METRIC, None), float(a.active_at // 1000)))
        if limit > 0 and num_active > limit:
            self.active = {}
            raise RuleError(f"exceeded limit of {limit} with {num_active} alerts")
        return out

    def _series(self, a: Alert, metric: str, state: str | None) -> Labels:
        d = dict(self.labels)
        d.update(a.labels.items_tuple())
        d["__name__"] = metric
        d["alertname"] = self.name
        if state is not None:
            d["alertstate"] = state
        return Labels(d)

    def for_state_labels(self, a: Alert) -> Labels:
        """The ``ALERTS_FOR_STATE`` series of an alert (what restoring looks up)."""
        return self._series(a, ALERT_FOR_STATE_METRIC, None)

    def state(self) -> AlertState:
        return max((a.state for a in self.active.values()), default=AlertState.INACTIVE)

    def active_alerts(self) -> list[Alert]:
        """Pending and firing alerts (resolved ones kept for re-sending are left out)."""
        return [a for a in self.active.values() if a.resolved_at == 0]

    def alerts_to_send(self, ts: int, resend_delay_ms: int, interval_ms: int) -> list[Alert]:
        out = []
        for a in self.active.values():
            if a.needs_sending(ts, resend_delay_ms):
                a.last_sent_at = ts
                a.valid_until = ts + 4 * max(resend_delay_ms, interval_ms)
                out.append(Alert(**{f: getattr(a, f) for f in a.__dataclass_fields__}))
        return out


Rule = RecordingRule | AlertingRule

#: A cached selection is fetched over at least this window, so rules over ``[1m]``…``[10m]`` share it.
CACHE_MIN_WINDOW_MS = 15 * 60_000


class _CachedSelects:
    """Selections made during one group evaluation, shared by its rules (many rules read the same series
    at the same timestamp). Emptied whenever the group commits output, so a rule never misses a sample an
    earlier rule wrote."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.entries: dict[tuple[tuple[str, str, str], ...], tuple[int, int, list[Series]]] = {}

    def clear(self) -> None:
        self.entries.clear()

    # the Storage protocol, as far as the engine uses it
    def querier(self, mint: int, maxt: int) -> _CachedQuerier:
        return _CachedQuerier(self, mint, maxt)

    def appender(self) -> Appender:
        return self.storage.appender()


class _CachedQuerier:
    def __init__(self, cache: _CachedSelects, mint: int, maxt: int) -> None:
        self.cache, self.mint, self.maxt = cache, mint, maxt

    async def select(self, matchers: list[Matcher], hints: SelectHints | None = None) -> list[Series]:
        key = tuple(sorted((m.name, m.op.value, m.value) for m in matchers))
        hit = self.cache.entries.get(key)
        if hit is None or hit[0] > self.mint or hit[1] < self.maxt:
            lo = min(self.mint, self.maxt - CACHE_MIN_WINDOW_MS)
            q = self.cache.storage.querier(lo, self.maxt)
            try:
                series = await q.select(matchers, None)
            finally:
                await q.close()
            hit = (lo, self.maxt, series)
            self.cache.entries[key] = hit
        out = []
        for s in hit[2]:
            a = int(np.searchsorted(s.timestamps, self.mint, "left"))
            b = int(np.searchsorted(s.timestamps, self.maxt, "right"))
            if b > a:
                out.append(s if (a == 0 and b == len(s.timestamps)) else Series(s.labels, s.timestamps[a:b],
                                                                                    s.values[a:b]))
        return out

    async def label_names(self, matchers: list[Matcher] | None = None) -> list[str]:
        q = self.cache.storage.querier(self.mint, self.maxt)
        try:
            return await q.label_names(matchers)
        finally:
            await q.close()

    async def label_values(self, name: str, matchers: list[Matcher] | None = None) -> list[str]:
        q = self.cache.storage.querier(self.mint, self.maxt)
        try:
            return await q.label_values(name, matchers)
        finally:
            await q.close()

    async def close(self) -> None:
        return None


def selectors(expr: str) -> list[list[Matcher]] | None:
    """The matchers of every selector in ``expr`` (None when it cannot be parsed: treat as reading all)."""
    from query import ast
    from query.errors import BadData
    from query.parse import parse

    try:
        root = parse(expr)
    except BadData:
        return None
    out: list[list[Matcher]] = []
    stack: list[ast.Expr] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.VectorSelector):
            out.append(node.matchers)
        elif isinstance(node, ast.MatrixSelector):
            out.append(node.selector.matchers)
        elif isinstance(node, ast.Subquery | ast.Unary | ast.Paren):
            stack.append(node.expr)
        elif isinstance(node, ast.Call):
            stack.extend(node.args)
        elif isinstance(node, ast.Aggregate):
            stack.append(node.expr)
            if node.param is not None:
                stack.append(node.param)
        elif isinstance(node, ast.Binary):
            stack.extend((node.lhs, node.rhs))
    return out


@dataclass
class _Pending:
    """Rule output staged in a group evaluation, committed together (see :meth:`Group.eval`)."""

    rows: list[tuple[Labels, int, float]] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    owners: dict[Labels, int] = field(default_factory=dict)
    outputs: list[tuple[int, list[Labels]]] = field(default_factory=list)

    def read_by(self, sels: list[list[Matcher]] | None) -> bool:
        """Whether a rule with these selectors could read a staged series."""
        if not self.rows:
            return False
        if sels is None:
            return True
        for matchers in sels:
            name = next((m.value for m in matchers if m.name == "__name__" and m.op is MatchOp.EQ), None)
            if name is not None:
                if name in self.names:
                    return True
                continue
            if any(all(m.matches_labels(lb) for m in matchers) for lb in self.owners):
                return True
        return False


def _go_labels(pairs: Sequence[tuple[str, str]]) -> str:
    from rules.gofmt import go_quote

    return "{" + ", ".join(f"{k}={go_quote(v)}" for k, v in pairs) + "}"


def build_rule(spec: RuleSpec, external_labels: Mapping[str, str], external_url: str, restored: bool) -> Rule:
    if spec.alert:
        return AlertingRule(spec.alert, spec.expr, spec.for_ms, spec.keep_firing_for_ms, dict(spec.labels),
                            dict(spec.annotations), dict(external_labels), external_url, restored)
    return RecordingRule(spec.record, spec.expr, dict(spec.labels))


@dataclass
class Group:
    """A rule group: rules evaluated in order every ``interval_ms``."""

    name: str
    file: str
    interval_ms: int
    limit: int
    rules: list[Rule]
    tenant: tuple[str, str] | None = None
    series_in_previous_eval: list[dict[Labels, None]] = field(default_factory=list)
    stale_series: list[Labels] = field(default_factory=list)
    evaluation_s: float = 0.0
    last_evaluation: float = 0.0
    last_eval_ts: int = 0
    #: several rulers evaluate this group (HA): a sample another replica already wrote is not an error
    replicated: bool = False
    deduplicated: int = 0
    _written: set[Labels] = field(default_factory=set)
    _selector_cache: dict[int, list[list[Matcher]] | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.series_in_previous_eval:
            self.series_in_previous_eval = [{} for _ in self.rules]

    @property
    def key(self) -> str:
        return f"{self.file};{self.name}"

    def alerting_rules(self) -> list[AlertingRule]:
        return [r for r in self.rules if isinstance(r, AlertingRule)]

    def equals(self, other: Group) -> bool:
        """Same definition (Prometheus keeps a group's state across a reload only when it is equal)."""
        return (self.name, self.file, self.interval_ms, self.limit, self.tenant) == (
            other.name, other.file, other.interval_ms, other.limit, other.tenant
        ) and [_rule_def(r) for r in self.rules] == [_rule_def(r) for r in other.rules]

    def copy_state(self, old: Group) -> None:
        """Take over series and alert state of an earlier version of this group (matched by name + labels)."""
        self.evaluation_s, self.last_evaluation = old.evaluation_s, old.last_evaluation
        by_key: dict[str, list[int]] = {}
        for i, r in enumerate(old.rules):
            by_key.setdefault(r.key(), []).append(i)
        for i, r in enumerate(self.rules):
            idx = by_key.get(r.key())
            if not idx:
                continue
            fi = idx.pop(0)
            self.series_in_previous_eval[i] = old.series_in_previous_eval[fi]
            fr = old.rules[fi]
            if isinstance(r, AlertingRule) and isinstance(fr, AlertingRule):
                r.active.update(fr.active)
        self.stale_series = list(old.stale_series)
        for key, idx in by_key.items():
            for fi in idx:
                self.stale_series.extend(old.series_in_previous_eval[fi])
            del key

    async def eval(
        self,
        ts: int,
        query: RuleQuery,
        storage: Storage,
        notify: NotifyFunc | None = None,
        resend_delay_ms: int = 60_000,
    ) -> int:
        """Evaluate every rule at ``ts`` (ms); returns the number of samples produced.

        Prometheus commits each rule's output before the next rule runs. The same visibility is kept with
        fewer commits: output is staged and committed just before a rule whose selectors could read a
        staged series, and at the end (one durable commit per group instead of one per rule).
        """
        total = 0
        self._written = set()
        pending = _Pending()
        cache: _CachedSelects | None = None
        if isinstance(query, EngineQuery):
            cache = _CachedSelects(query.engine.storage)
            engine = dataclasses.replace(query.engine, storage=cache)  # type: ignore[arg-type]
            query = EngineQuery(engine, query.extra)
        for i, rule in enumerate(self.rules):
            if pending.read_by(self._selectors(i)):
                await self._flush(pending, ts, storage)
                pending = _Pending()
                if cache is not None:
                    cache.clear()
            start = time.perf_counter()
            try:
                vector = await rule.eval(ts, query, self.limit)
            except RuleError as err:
                _fail(rule, str(err))
                log.warning("evaluating rule %s of group %s failed: %s", rule.name, self.name, err)
                _timing(rule, start)
                continue
            rule.status.health = Health.GOOD
            rule.status.last_error = ""
            total += len(vector)
            if isinstance(rule, AlertingRule) and notify is not None:
                sent = rule.alerts_to_send(ts, resend_delay_ms, self.interval_ms)
                if sent:
                    notify(rule.expr, sent)
            self._stage(i, vector, ts, pending)
            _timing(rule, start)
        await self._flush(pending, ts, storage)
        await self.cleanup_stale_series(ts, storage)
        self.last_eval_ts = ts
        return total

    def _selectors(self, i: int) -> list[list[Matcher]] | None:
        cache = self._selector_cache
        if i not in cache:
            cache[i] = selectors(self.rules[i].expr)
        return cache[i]

    def _stage(self, i: int, vector: list[Sample], ts: int, pending: _Pending) -> None:
        if self.tenant is not None:  # a tenant's rules write only into the tenant's label space
            name, value = self.tenant
            vector = [(lb.with_(**{name: value}), v) for lb, v in vector]
        current = [lb for lb, _ in vector]
        current_set = set(current)
        stale = [lb for lb in self.series_in_previous_eval[i] if lb not in current_set]
        for lb, v in vector:
            pending.rows.append((lb, ts, v))
            pending.owners[lb] = i
            if lb.name:
                pending.names.add(lb.name)
        pending.rows.extend((lb, ts, STALE_NAN) for lb in stale)
        pending.outputs.append((i, current))

    async def _flush(self, pending: _Pending, ts: int, storage: Storage) -> None:
        failed = await append_rows(storage, pending.rows)
        for lb, msg in failed.items():
            i = pending.owners.get(lb)
            if i is None:
                continue
            if self.replicated and msg == DUPLICATE and lb not in self._written:
                # another replica evaluating the same group already recorded this series at this
                # timestamp (with a value computed a moment earlier): first writer wins
                self.deduplicated += 1
                continue
            self.rules[i].status.health = Health.BAD
            self.rules[i].status.last_error = msg
        for i, current in pending.outputs:
            self.series_in_previous_eval[i] = {lb: None for lb in current if lb not in failed}
            self._written.update(current)

    async def cleanup_stale_series(self, ts: int, storage: Storage) -> None:
        if not self.stale_series:
            return
        await append_rows(storage, [(lb, ts, STALE_NAN) for lb in self.stale_series])
        self.stale_series = []

    def mark_all_stale(self) -> None:
        """The group was removed: its series get staleness markers (Prometheus waits 2 intervals)."""
        for prev in self.series_in_previous_eval:
            self.stale_series.extend(prev)
        self.series_in_previous_eval = [{} for _ in self.rules]

    async def restore_for_state(
        self, now_ms: int, storage: Storage, outage_tolerance_ms: int, for_grace_period_ms: int
    ) -> None:
        """Prometheus's ``RestoreForState``: continue each pending alert's ``for`` from ``ALERTS_FOR_STATE``."""
        querier = storage.querier(now_ms - outage_tolerance_ms, now_ms)
        try:
            for rule in self.alerting_rules():
                if rule.hold_ms < for_grace_period_ms:
                    rule.restored = True
                    continue
                for a in list(rule.active.values()):
                    lb = rule.for_state_labels(a)
                    if self.tenant is not None:
                        lb = lb.with_(**{self.tenant[0]: self.tenant[1]})
                    matchers = [Matcher(k, MatchOp.EQ, v) for k, v in lb.items_tuple()]
                    try:
                        found = [s for s in await querier.select(matchers) if s.labels == lb]
                    except StorageError as err:
                        log.error("failed to restore 'for' state of alert %s: %s", rule.name, err)
                        continue
                    if not found or len(found[0].timestamps) == 0:
                        continue
                    t = int(found[0].timestamps[-1])
                    v = float(found[0].values[-1])
                    if is_stale(v):
                        continue
                    down_at = (t // 1000) * 1000
                    restored_active = int(v) * 1000
                    spent = down_at - restored_active
                    remaining = rule.hold_ms - spent
                    if remaining <= 0:
                        pass
                    elif remaining < for_grace_period_ms:
                        restored_active = now_ms + for_grace_period_ms - rule.hold_ms
                    else:
                        restored_active = restored_active + (now_ms - down_at)
                    a.active_at = restored_active
                rule.restored = True
        finally:
            await querier.close()


def _rule_def(r: Rule) -> tuple[object, ...]:
    if isinstance(r, AlertingRule):
        return ("alert", r.name, r.expr, r.hold_ms, r.keep_firing_for_ms, sorted(r.labels.items()),
                sorted(r.annotations.items()))
    return ("record", r.name, r.expr, sorted(r.labels.items()))


def _fail(rule: Rule, msg: str) -> None:
    rule.status.health = Health.BAD
    rule.status.last_error = msg


def _timing(rule: Rule, start: float) -> None:
    rule.status.evaluation_s = time.perf_counter() - start
    rule.status.last_evaluation = time.time()


def prometheus_append_error(err: SampleRejected) -> str:
    """Prometheus's storage error for a rejected sample (what ``lastError`` and promtool print)."""
    msg = str(err)
    if msg.startswith("conflicting"):
        return DUPLICATE
    if msg.startswith("out-of-order"):
        return "out of order sample"
    return msg


async def append_rows(storage: Storage, rows: list[tuple[Labels, int, float]]) -> dict[Labels, str]:
    """Commit rows in one transaction; when it is refused, commit series by series so only the bad ones
    are dropped, as Prometheus's per-sample appends do. Returns the refused series with Prometheus's error
    (refused staleness markers are ignored, as Prometheus ignores them)."""
    if not rows:
        return {}
    app = storage.appender()
    try:
        for lb, t, v in rows:
            app.append(lb, t, v)
        await app.commit()
        return {}
    except SampleRejected:
        await app.rollback()
    except StorageError as err:
        await app.rollback()
        return {lb: str(err) for lb, _, v in rows if not is_stale(v)}
    failed: dict[Labels, str] = {}
    for lb, t, v in rows:
        one = storage.appender()
        try:
            one.append(lb, t, v)
            await one.commit()
        except SampleRejected as err:
            await one.rollback()
            if not is_stale(v):
                failed[lb] = prometheus_append_error(err)
        except StorageError as err:
            await one.rollback()
            if not is_stale(v):
                failed[lb] = str(err)
    return failed


def build_group(
    spec: GroupSpec,
    file: str,
    default_interval_ms: int,
    external_labels: Mapping[str, str],
    external_url: str,
    restored: bool,
    tenant: tuple[str, str] | None = None,
) -> Group:
    rules = [build_rule(r, external_labels, external_url, restored) for r in spec.rules]
    return Group(spec.name, file, spec.interval_ms or default_interval_ms, spec.limit, rules, tenant)
