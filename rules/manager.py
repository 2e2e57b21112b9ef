"""The rule manager: loads rule files into groups and evaluates each group on its own aligned schedule.

As in Prometheus, a group's evaluation times are ``k * interval + offset`` where the offset is a hash of
the group's file and name, so every ruler that loads the same file at the same path evaluates at the
same timestamps (that is what lets HA replicas write identical samples; see docs/rules.md). After a
(re)start the first two evaluations write no ``ALERTS`` series; then pending alerts get their ``for``
state back from ``ALERTS_FOR_STATE`` and the rules are marked restored. A reload keeps the state of
unchanged groups, hands alert state over to changed ones and writes staleness markers for the series of
removed groups two intervals later.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from query.engine import Engine
from rules.config import RulerConfig
from rules.evaluation import AlertingRule, EngineQuery, Group, build_group
from rules.notifier import Notifier
from rules.rulefile import RuleFileError, load_rule_file
from sotp.model import Matcher, MatchOp
from sotp.storage import Storage

log = logging.getLogger("rules.manager")


def eval_offset_ms(group: Group) -> int:
    """A stable offset in ``[0, interval)`` from the group's file and name (the same in every process)."""
    h = int.from_bytes(hashlib.sha256(f"{group.file}\xff{group.name}".encode()).digest()[:8], "big")
    return h % group.interval_ms


def eval_timestamp(group: Group, now_ms: int) -> int:
    """The group's latest scheduled evaluation time at or before ``now_ms``."""
    offset = eval_offset_ms(group)
    adj = now_ms - offset
    return adj - adj % group.interval_ms + offset


@dataclass
class GroupStats:
    iterations: int = 0
    missed: int = 0
    evaluations: int = 0
    failures: int = 0
    samples: int = 0


@dataclass
class Manager:
    """Owns the groups and their evaluation tasks."""

    storage: Storage
    config: RulerConfig
    engine: Engine
    notifier: Notifier | None = None
    groups: dict[str, Group] = field(default_factory=dict)
    stats: dict[str, GroupStats] = field(default_factory=dict)
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _restored: bool = False
    _running: bool = False
    _should_restore: bool = True

    # ---- loading -------------------------------------------------------------------------------------
    def load_groups(self) -> dict[str, Group]:
        """Build every group from the configured files; raises :class:`RuleFileError` on the first bad file."""
        out: dict[str, Group] = {}
        sources: list[tuple[str, tuple[str, str] | None]] = [(f, None) for f in self.config.files]
        for tenant_key, files in self.config.tenant_files.items():
            sources.extend((f, tenant_key) for f in files)
        for path, tenant in sources:
            for spec in load_rule_file(path):
                g = build_group(spec, path, self.config.evaluation_interval_ms, self.config.external_labels,
                                self.config.external_url, self._restored, tenant)
                g.replicated = True  # rulers may run in HA pairs over one storage (docs/rules.md)
                for r in g.alerting_rules():
                    r.url_for_funcs = self.config.external_url
                key = g.key if tenant is None else f"{g.key};{tenant[0]}={tenant[1]}"
                out[key] = g
        return out

    async def update(self) -> list[str]:
        """(Re)load the rule files; on error the previous groups keep running. Returns the errors."""
        try:
            new = self.load_groups()
        except RuleFileError as err:
            msgs = [f"{err.path}: {e}" for e in err.errors]
            for m in msgs:
                log.error("loading rule groups failed: %s", m)
            return msgs
        should_restore = not self._restored
        self._restored = True
        for key, g in new.items():
            old = self.groups.pop(key, None)
            if old is not None and old.equals(g):
                new[key] = old
                continue
            if old is not None:
                await self._stop(key)
                g.copy_state(old)
            if self._running:
                self._start(key, g, should_restore)
        for key, old in self.groups.items():  # removed groups
            await self._stop(key)
            old.mark_all_stale()
            if self._running:
                self._later(2 * old.interval_ms / 1000, old)
        self.groups = new
        self._should_restore = should_restore
        return []

    def _later(self, delay_s: float, g: Group) -> None:
        async def final() -> None:
            await asyncio.sleep(delay_s)
            await self._final_stale(g)

        self._tasks[f"stale:{g.key}:{id(g)}"] = asyncio.create_task(final())

    async def _final_stale(self, g: Group) -> None:
        await g.cleanup_stale_series(int(time.time() * 1000), self.storage)

    # ---- running -------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._running = True
        for key, g in self.groups.items():
            self._start(key, g, self._should_restore)

    def _start(self, key: str, g: Group, restore: bool) -> None:
        self.stats.setdefault(key, GroupStats())
        self._tasks[key] = asyncio.create_task(self._run_group(key, g, restore), name=f"rule group {key}")

    async def _stop(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop(self) -> None:
        self._running = False
        for key in list(self._tasks):
            await self._stop(key)

    def query_for(self, g: Group) -> EngineQuery:
        extra = [Matcher(g.tenant[0], MatchOp.EQ, g.tenant[1])] if g.tenant else []
        return EngineQuery(self.engine, extra)

    async def eval_group(self, key: str, g: Group, ts: int) -> None:
        """One evaluation with its bookkeeping (also used by tests to step a group by hand)."""
        st = self.stats.setdefault(key, GroupStats())
        st.iterations += 1
        start = time.perf_counter()
        notify = self.notifier.send if self.notifier is not None else None
        st.samples = await g.eval(ts, self.query_for(g), self.storage, notify, self.config.resend_delay_ms)
        g.evaluation_s = time.perf_counter() - start
        g.last_evaluation = time.time()
        st.evaluations += len(g.rules)
        st.failures += sum(1 for r in g.rules if r.status.health == "err")

    async def _run_group(self, key: str, g: Group, restore: bool) -> None:
        interval = g.interval_ms
        ts = eval_timestamp(g, int(time.time() * 1000)) + interval
        evaluations = 0
        while True:
            await asyncio.sleep(max(0.0, ts / 1000 - time.time()))
            try:
                await self.eval_group(key, g, ts)
            except Exception:  # a bug in one group must not stop the others or this group's schedule
                log.exception("rule group %s: evaluation failed", key)
            evaluations += 1
            if restore and evaluations == 2:
                await g.restore_for_state(int(time.time() * 1000), self.storage, self.config.outage_tolerance_ms,
                                          self.config.for_grace_period_ms)
                restore = False
            now = int(time.time() * 1000)
            missed = max(0, (now - ts) // interval - 1)
            if missed:
                self.stats[key].missed += missed
                log.warning("rule group %s missed %d evaluations (evaluation takes longer than %d ms)",
                            key, missed, interval)
            ts += (missed + 1) * interval

    def sorted_groups(self) -> list[Group]:
        return sorted(self.groups.values(), key=lambda g: (g.file, g.name, g.tenant or ("", "")))

    def alerting_rules(self) -> Iterator[tuple[Group, AlertingRule]]:
        for g in self.sorted_groups():
            for r in g.alerting_rules():
                yield g, r


class ManagerCollector:
    """The ruler's self-metrics (``sotp_rule_*``, ``sotp_notifications_*``), read from the manager."""

    def __init__(self, manager: Manager) -> None:
        self.m = manager

    def collect(self) -> Iterator[Metric]:
        m = self.m
        fams: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "last_duration": GaugeMetricFamily("sotp_rule_group_last_duration_seconds",
                                               "The duration of the last rule group evaluation.",
                                               labels=["rule_group"]),
            "last_eval": GaugeMetricFamily("sotp_rule_group_last_evaluation_timestamp_seconds",
                                           "The timestamp of the last rule group evaluation in seconds.",
                                           labels=["rule_group"]),
            "interval": GaugeMetricFamily("sotp_rule_group_interval_seconds", "The interval of a rule group.",
                                          labels=["rule_group"]),
            "rules": GaugeMetricFamily("sotp_rule_group_rules", "The number of rules.", labels=["rule_group"]),
            "samples": GaugeMetricFamily("sotp_rule_group_last_evaluation_samples",
                                         "The number of samples returned during the last rule group evaluation.",
                                         labels=["rule_group"]),
            "iterations": CounterMetricFamily("sotp_rule_group_iterations",
                                              "The number of scheduled rule group evaluations.",
                                              labels=["rule_group"]),
            "missed": CounterMetricFamily("sotp_rule_group_iterations_missed",
                                          "Rule group evaluations missed due to slow evaluation.",
                                          labels=["rule_group"]),
            "evals": CounterMetricFamily("sotp_rule_evaluations", "The number of rule evaluations.",
                                         labels=["rule_group"]),
            "failures": CounterMetricFamily("sotp_rule_evaluation_failures",
                                            "The number of rule evaluation failures.", labels=["rule_group"]),
            "dedup": CounterMetricFamily("sotp_rule_group_samples_deduplicated",
                                         "Samples another replica had already written at the same timestamp.",
                                         labels=["rule_group"]),
        }
        for key, g in m.groups.items():
            st = m.stats.get(key, GroupStats())
            fams["last_duration"].add_metric([key], g.evaluation_s)
            fams["last_eval"].add_metric([key], g.last_evaluation)
            fams["interval"].add_metric([key], g.interval_ms / 1000)
            fams["rules"].add_metric([key], len(g.rules))
            fams["samples"].add_metric([key], st.samples)
            fams["iterations"].add_metric([key], st.iterations)
            fams["missed"].add_metric([key], st.missed)
            fams["evals"].add_metric([key], st.evaluations)
            fams["failures"].add_metric([key], st.failures)
            fams["dedup"].add_metric([key], g.deduplicated)
        yield from fams.values()
        if m.notifier is not None:
            sent = CounterMetricFamily("sotp_notifications_sent", "Alerts sent to Alertmanager.",
                                       labels=["alertmanager"])
            errors = CounterMetricFamily("sotp_notifications_errors", "Alerts that failed to send.",
                                         labels=["alertmanager"])
            for url, _, _ in m.notifier.targets:
                sent.add_metric([url], m.notifier.stats.sent.get(url, 0))
                errors.add_metric([url], m.notifier.stats.errors.get(url, 0))
            dropped = CounterMetricFamily("sotp_notifications_dropped", "Alerts dropped from the full queue.")
            dropped.add_metric([], m.notifier.stats.dropped)
            queue = GaugeMetricFamily("sotp_notifications_queue_length", "Alerts waiting to be sent.")
            queue.add_metric([], len(m.notifier.queue))
            yield from (sent, errors, dropped, queue)
