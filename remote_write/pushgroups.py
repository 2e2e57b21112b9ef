"""The push gateway's groups: Pushgateway's semantics as a pure state machine (no HTTP, no storage).

A *group* is identified by its grouping key (``job`` plus the other path labels, plus the tenant label of
a tenant-bound token). It holds the series last pushed to it. Every operation returns a :class:`Plan`: the
samples to commit (current values, staleness markers for series that went away, ``push_time_seconds`` and
``push_failure_time_seconds``) and a function that applies the new state once the commit succeeded, so a
failed commit leaves the groups unchanged.

Rules (Pushgateway 1.5.1, checked against the real binary in tests/remote_write/test_pushgateway_oracle.py):

* PUT replaces the whole group; POST replaces only the metric families present in the body; DELETE
  removes the group. An empty PUT empties the group but still records the push.
* Path labels override same-named labels in the body.
* Samples with timestamps are refused, as is a series pushed twice in one body, a series that another
  group already holds, and a family whose type differs from the same family in another group **of the
  same tenant** (tenants' type indexes are separate: one tenant's counter never blocks another's gauge).
* Each tenant (and the untenanted writers together) holds at most ``pushgateway.max_groups`` groups; a
  push that would create one more is refused (400, :class:`LimitExceeded`, no failure recorded).
* A push refused for its content (:class:`PushRejected`: timestamps, a series twice, a conflict with
  another group) records ``push_failure_time_seconds``; a group that did not exist is created empty with
  ``push_time_seconds`` 0. Syntax errors, bad paths and size limits record nothing. Both as Pushgateway.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from remote_write.limits import check_labels
from remote_write.pipeline import SeriesBatch
from sotp.codec.textparse import iter_samples, parse, parse_series
from sotp.config import Limits
from sotp.errors import DecodeError, LimitExceeded
from sotp.model import METRIC_NAME, STALE_NAN, Labels

Tenant = tuple[str, str] | None

PUSH_TIME: Final = "push_time_seconds"
PUSH_FAILURE_TIME: Final = "push_failure_time_seconds"
_SUFFIXES: Final = {
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "counter": ("_total", "_created"),
    "info": ("_info",),
}


class PushRejected(DecodeError):
    """A push that is well-formed but inconsistent with the gateway's state (400)."""


def family_of(name: str, types: dict[str, str]) -> str:
    """The metric family a sample name belongs to (``h_bucket`` → ``h`` when ``h`` is a histogram)."""
    if name in types:
        return name
    for typ, suffixes in _SUFFIXES.items():
        for suffix in suffixes:
            if name.endswith(suffix) and types.get(name[: -len(suffix)]) == typ:
                return name[: -len(suffix)]
    return name


@dataclass
class Group:
    """One grouping key's state."""

    key: Labels
    #: Full series labels → last pushed value.
    series: dict[Labels, float] = field(default_factory=dict)
    #: Family name → type (``untyped`` when the body had no ``# TYPE``).
    families: dict[str, str] = field(default_factory=dict)
    #: Series → its family.
    family: dict[Labels, str] = field(default_factory=dict)
    push_time: float = 0.0
    failure_time: float = 0.0
    #: Wall-clock second of the last push or failure (the TTL counts from here).
    last_activity: float = 0.0
    #: Last timestamp written for this group's series: every write uses a later one.
    last_t_ms: int = 0
    #: Wall-clock second of the last write (push or refresh).
    last_write: float = 0.0
    #: The pushing token's tenant ``(label, value)``: scopes the type index and the group count.
    tenant: Tenant = None

    def meta_series(self) -> tuple[Labels, Labels]:
        return self.key.with_(__name__=PUSH_TIME), self.key.with_(__name__=PUSH_FAILURE_TIME)


@dataclass
class Plan:
    """Samples to commit at ``t_ms``, then :meth:`apply` to make the state match.

    ``changes`` is what :meth:`apply` will make of each group it touches (``None``: the group ends), so a
    caller that stores the groups can write the same change in the samples' transaction."""

    batches: list[SeriesBatch]
    apply: Callable[[], None]
    t_ms: int
    samples: int = 0
    changes: dict[Labels, Group | None] = field(default_factory=dict)


@dataclass
class Prepared:
    """A parsed, validated body: series → value, series → family, family → type."""

    series: dict[Labels, float]
    family: dict[Labels, str]
    families: dict[str, str]


#: Parsed series text → validated labels, per group: a pusher sends the same series every time, so
#: each is parsed and validated once (Prometheus's scrape cache works the same way).
SeriesCache = dict[tuple[Labels, str], tuple[Labels, str]]
_CACHE_MAX: Final = 200_000


def prepare(key: Labels, text: str, limits: Limits, cache: SeriesCache | None = None) -> Prepared:
    """Parse and validate a text-format body for group ``key``.

    Raises :class:`DecodeError` (syntax, invalid names), :class:`PushRejected` (timestamps, a series
    twice, reserved names) or :class:`LimitExceeded`.
    """
    cache = {} if cache is None else cache
    if len(cache) > _CACHE_MAX:
        cache.clear()
    # Only the comment lines carry metadata; the samples go through the cached two-level API.
    types = parse("\n".join(line for line in text.split("\n") if line.startswith("#"))).types
    out = Prepared({}, {}, {})
    grouping = dict(key.items_tuple())
    for i, (raw, value, t_ms) in enumerate(iter_samples(text)):
        hit = cache.get((key, raw))
        if hit is None:
            name, pairs = parse_series(raw)
            if name in (PUSH_TIME, PUSH_FAILURE_TIME):
                raise PushRejected(f"metric {name} is reserved: the gateway sets it for each group")
            labels = Labels({**dict(pairs), **grouping, METRIC_NAME: name})
            check_labels(labels, limits, f"sample {i + 1} ({name})")
            hit = cache[(key, raw)] = (labels, name)
        labels, name = hit
        if t_ms is not None:
            raise PushRejected(
                f"sample {name} has a timestamp: pushed metrics must not have timestamps "
                "(the push time is used, as with Pushgateway)"
            )
        if labels in out.series:
            raise PushRejected(f"series {labels} is pushed twice in one body")
        if len(out.series) >= limits.max_series_per_request:
            raise LimitExceeded(
                f"push has more than {limits.max_series_per_request} series (limits.max_series_per_request)"
            )
        fam = family_of(name, types)
        out.series[labels] = value
        out.family[labels] = fam
        out.families[fam] = types.get(fam, "untyped")
    return out


class Groups:
    """Every group of one gateway, with the cross-group indexes the consistency checks need."""

    def __init__(self, max_groups: int = 0) -> None:
        self.groups: dict[Labels, Group] = {}
        #: Groups one tenant may hold (0: no limit).
        self.max_groups = max_groups
        #: Series → the group that holds it (series carry their tenant label, so this never crosses tenants).
        self._owner: dict[Labels, Labels] = {}
        #: (tenant, family) → how many of the tenant's groups define it with each type.
        self._types: dict[tuple[Tenant, str], Counter[str]] = {}
        #: Tenant → how many groups it holds.
        self._count: Counter[Tenant] = Counter()
        #: Newest timestamp written by any committed plan.
        self._last_t = 0

    # -- planning

    def _next_t(self, group: Group | None, now: float) -> int:
        t = int(now * 1000)
        # Later than anything this gateway wrote, not only than this group's last write: a series can
        # move between groups (DELETE in one, PUT in another) within one millisecond.
        return max(t, self._last_t + 1, group.last_t_ms + 1 if group is not None else 0)

    def _plan(self, batches: list[SeriesBatch], apply: Callable[[], None], t: int, key: Labels,
              after: Group | None) -> Plan:
        def apply_and_advance() -> None:
            apply()
            self._last_t = max(self._last_t, t)

        return Plan(batches, apply_and_advance, t, len(batches), {key: after})

    def _meta(self, group: Group, push_time: float, failure_time: float, t: int) -> list[SeriesBatch]:
        pt, ft = group.meta_series()
        return [SeriesBatch(pt, [t], [push_time]), SeriesBatch(ft, [t], [failure_time])]

    def _check_room(self, key: Labels, tenant: Tenant) -> None:
        if key not in self.groups and self.max_groups and self._count[tenant] >= self.max_groups:
            who = f"tenant {'='.join(tenant)}" if tenant else "the push gateway"
            raise LimitExceeded(
                f"{who} already holds {self._count[tenant]} push groups (pushgateway.max_groups): "
                "DELETE groups no longer pushed, or raise the limit"
            )

    def plan_push(self, key: Labels, body: Prepared, replace_all: bool, now: float, tenant: Tenant = None) -> Plan:
        """PUT (``replace_all``) or POST of a prepared body; raises :class:`PushRejected` on conflicts and
        :class:`LimitExceeded` when the tenant already holds ``max_groups`` groups."""
        self._check_room(key, tenant)
        old = self.groups.get(key)
        if replace_all or old is None:
            kept: dict[Labels, float] = {}
        else:
            kept = {s: v for s, v in old.series.items() if old.family[s] not in body.families}
        new_series = {**kept, **body.series}
        for s in body.series:
            owner = self._owner.get(s)
            if owner is not None and owner != key:
                raise PushRejected(f"series {s} is already pushed by group {owner}: push it to one group only")
        for fam, typ in body.families.items():
            others = Counter(self._types.get((tenant, fam), Counter()))
            if old is not None and fam in old.families:
                others[old.families[fam]] -= 1
            clash = sorted(t for t, n in others.items() if n > 0 and t != typ)
            if clash:
                raise PushRejected(
                    f"metric {fam} is pushed as {typ} but another group has it as {clash[0]}: types must agree"
                )
        t = self._next_t(old, now)
        batches = [SeriesBatch(s, [t], [v]) for s, v in new_series.items()]
        if old is not None:
            batches += [SeriesBatch(s, [t], [STALE_NAN]) for s in old.series if s not in new_series]
        failure = old.failure_time if old is not None else 0.0
        group = Group(key, failure_time=failure, tenant=tenant)
        group.series = new_series
        for s in new_series:
            fam = body.family[s] if s in body.series else old.family[s]  # type: ignore[union-attr]
            group.family[s] = fam
            group.families[fam] = body.families[fam] if fam in body.families else old.families[fam]  # type: ignore[union-attr]
        group.push_time = now
        group.last_activity = now
        group.last_t_ms = t
        group.last_write = now
        batches += self._meta(group, now, failure, t)
        return self._plan(batches, lambda: self._install(key, group), t, key, group)

    def plan_failure(self, key: Labels, now: float, tenant: Tenant = None) -> Plan:
        """Record a refused push: ``push_failure_time_seconds`` = now (creating an empty group if needed,
        within ``max_groups``)."""
        self._check_room(key, tenant)
        old = self.groups.get(key)
        group = Group(key, tenant=tenant) if old is None else _copy(old)
        group.failure_time = now
        group.last_activity = now
        t = self._next_t(old, now)
        group.last_t_ms = t
        group.last_write = now
        batches = [SeriesBatch(s, [t], [v]) for s, v in group.series.items()]
        batches += self._meta(group, group.push_time, now, t)
        return self._plan(batches, lambda: self._install(key, group), t, key, group)

    def plan_delete(self, key: Labels, now: float) -> Plan | None:
        """DELETE: staleness markers for every series of the group; ``None`` if there is no such group."""
        old = self.groups.get(key)
        if old is None:
            return None
        return self._plan_end(old, now)

    def _plan_end(self, old: Group, now: float) -> Plan:
        t = self._next_t(old, now)
        batches = [SeriesBatch(s, [t], [STALE_NAN]) for s in [*old.series, *old.meta_series()]]
        return self._plan(batches, lambda: self._remove(old.key), t, old.key, None)

    def plan_maintenance(self, now: float, ttl: float, refresh: float, limit: int | None = None) -> list[Plan]:
        """Groups silent for ``ttl`` seconds end (staleness markers); live groups not written for
        ``refresh`` seconds (``0``: never) get their last values written again, so a job that pushes
        less often than the query lookback (5 min) stays visible until its TTL. At most ``limit`` plans:
        once applied, those groups are no longer due, so calling again gives the next ones."""
        plans: list[Plan] = []
        for group in list(self.groups.values()):
            if limit is not None and len(plans) >= limit:
                break
            if now - group.last_activity >= ttl:
                plans.append(self._plan_end(group, now))
            elif refresh > 0 and now - group.last_write >= refresh:
                t = self._next_t(group, now)
                batches = [SeriesBatch(s, [t], [v]) for s, v in group.series.items()]
                batches += self._meta(group, group.push_time, group.failure_time, t)
                after = _copy(group)
                after.last_t_ms, after.last_write = max(group.last_t_ms, t), now
                plans.append(self._plan(batches, _touch(group, t, now), t, group.key, after))
        return plans

    # -- loading (a stored copy of the groups: remote_write.pushstate)

    @property
    def last_t(self) -> int:
        """Newest timestamp written by any committed plan (every later write uses a later one)."""
        return self._last_t

    @last_t.setter
    def last_t(self, t: int) -> None:
        self._last_t = t

    def install(self, group: Group) -> None:
        """Put ``group`` in place of the group with its key (as a committed plan would)."""
        self._install(group.key, group)

    def remove(self, key: Labels) -> None:
        """Forget the group ``key`` (as a committed DELETE would)."""
        self._remove(key)

    def clear(self) -> None:
        """Forget every group (before loading them all again)."""
        self.groups.clear()
        self._owner.clear()
        self._types.clear()
        self._count.clear()
        self._last_t = 0

    # -- applying

    def _install(self, key: Labels, group: Group) -> None:
        self._remove(key)
        self.groups[key] = group
        self._count[group.tenant] += 1
        for s in group.series:
            self._owner[s] = key
        for fam, typ in group.families.items():
            self._types.setdefault((group.tenant, fam), Counter())[typ] += 1

    def _remove(self, key: Labels) -> None:
        old = self.groups.pop(key, None)
        if old is None:
            return
        self._count[old.tenant] -= 1
        if self._count[old.tenant] <= 0:
            del self._count[old.tenant]
        for s in old.series:
            if self._owner.get(s) == key:
                del self._owner[s]
        for fam, typ in old.families.items():
            counts = self._types[(old.tenant, fam)]
            counts[typ] -= 1
            if counts[typ] <= 0:
                del counts[typ]
            if not counts:
                del self._types[(old.tenant, fam)]


def _copy(g: Group) -> Group:
    return Group(g.key, dict(g.series), dict(g.families), dict(g.family), g.push_time, g.failure_time,
                 g.last_activity, g.last_t_ms, g.last_write, g.tenant)


def _touch(group: Group, t: int, now: float) -> Callable[[], None]:
    def apply() -> None:
        group.last_t_ms = max(group.last_t_ms, t)
        group.last_write = now

    return apply

