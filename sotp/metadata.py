"""Metric metadata (type, help, unit) as writers announce it, kept per tenant for ``/api/v1/metadata``.

Remote-write senders send it in ``WriteRequest.metadata``; the push gateway learns types from ``# TYPE``.
Entries are keyed by the writer's tenant (``None`` for a token without one, or when auth is off), so one
tenant can neither read nor overwrite what another announced. Names must be valid metric names; help and
unit are cut to ``limits.max_metadata_length`` characters; each tenant holds at most
``limits.max_metadata_per_tenant`` families (announcements of new families beyond it are dropped and
counted, existing ones still update). Memory is bounded by tenants × that cap × that length.

Readers: a tenant sees its own entries; a reader without a tenant sees every tenant's, with Prometheus's
shape (a metric maps to the list of its distinct entries).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from sotp.config import Limits

_METRIC_NAME_RE: Final = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
Tenant = tuple[str, str] | None


@dataclass(frozen=True, slots=True)
class Entry:
    """One family's metadata as ``/api/v1/metadata`` shows it."""

    type: str
    help: str
    unit: str

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "help": self.help, "unit": self.unit}


class MetadataStore:
    """Per-tenant metadata with bounded names, lengths and counts."""

    def __init__(self, limits: Limits) -> None:
        self.max_per_tenant = limits.max_metadata_per_tenant
        self.max_length = limits.max_metadata_length
        self._by_tenant: dict[Tenant, dict[str, Entry]] = {}
        #: Announcements dropped: invalid name, or a new family beyond the tenant's cap.
        self.dropped = 0

    def put(self, tenant: Tenant, family: str, type_: str, help_: str = "", unit: str = "",
            keep_existing: bool = False) -> bool:
        """Record one family's metadata for ``tenant``; ``keep_existing`` only adds (the push gateway's
        ``# TYPE`` must not erase a HELP that remote write sent). Returns whether it was kept."""
        if not _METRIC_NAME_RE.match(family) or len(family) > self.max_length:
            self.dropped += 1
            return False
        families = self._by_tenant.setdefault(tenant, {})
        if family in families:
            if keep_existing:
                return True
        elif len(families) >= self.max_per_tenant:
            self.dropped += 1
            return False
        families[family] = Entry(type_[:64], help_[: self.max_length], unit[: self.max_length])
        return True

    def put_many(self, tenant: Tenant, entries: Iterable[tuple[str, str, str, str]]) -> int:
        """``(family, type, help, unit)`` tuples; returns how many were dropped."""
        before = self.dropped
        for family, type_, help_, unit in entries:
            self.put(tenant, family, type_, help_, unit)
        return self.dropped - before

    def view(self, tenant: Tenant, visible_to_all: bool, metric: str | None = None,
             limit: int | None = None) -> dict[str, list[dict[str, Any]]]:
        """What a reader sees: its tenant's entries, or (``visible_to_all``) every tenant's merged."""
        sources = list(self._by_tenant.values()) if visible_to_all else [self._by_tenant.get(tenant, {})]
        names = sorted({n for s in sources for n in s} if metric is None else {metric})
        out: dict[str, list[dict[str, Any]]] = {}
        for name in names:
            entries: list[Entry] = []
            for s in sources:
                e = s.get(name)
                if e is not None and e not in entries:
                    entries.append(e)
            if not entries:
                continue
            if limit is not None and len(out) >= limit:
                break
            out[name] = [e.to_json() for e in entries]
        return out

    def size(self) -> int:
        return sum(len(s) for s in self._by_tenant.values())


METADATA_KEY: Final = "metadata"


def metadata_store(extras: dict[str, Any], limits: Limits) -> MetadataStore:
    """The server's store (``ServerContext.extras``), created on first use."""
    store = extras.get(METADATA_KEY)
    if not isinstance(store, MetadataStore):
        store = extras[METADATA_KEY] = MetadataStore(limits)
    return store


__all__ = ["METADATA_KEY", "Entry", "MetadataStore", "metadata_store"]
