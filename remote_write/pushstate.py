"""The push gateway's groups as stored state (:mod:`sotp.storage.state`, namespace ``pushgateway``).

One row per group, keyed by the canonical JSON of its grouping labels, holding everything
:class:`~remote_write.pushgroups.Group` holds: its series with their last values and families, the
families' types, ``push_time_seconds``/``push_failure_time_seconds``, the TTL clock (wall-clock seconds of
the last push or failure, and of the last write) and the last timestamp written. One more row,
:data:`LAST_T_KEY`, holds the newest timestamp any plan wrote, so every replica's next write is later.

A plan's change is written in the transaction of the samples it produces (:func:`change_for`), so the stored
groups and the stored samples never disagree; :func:`load` brings a :class:`~remote_write.pushgroups.Groups`
mirror up to date from what the store returns (the rows changed since the generation it last saw).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any, Final

from remote_write.pushgroups import Group, Groups, Plan
from sotp.model import Labels
from sotp.storage.state import StateChange, StateSnapshot

NAMESPACE: Final = "pushgateway"
#: Not valid JSON of a label list, so it never collides with a group's key.
LAST_T_KEY: Final = "last_t_ms"
_FORMAT: Final = 1


def _pairs(labels: Labels) -> list[list[str]]:
    return [[n, v] for n, v in labels.items_tuple()]


def _labels(pairs: Iterable[Any]) -> Labels:
    return Labels({str(n): str(v) for n, v in pairs})


def row_key(key: Labels) -> str:
    """The stored row's key of group ``key`` (its sorted label pairs as compact JSON)."""
    return json.dumps(_pairs(key), separators=(",", ":"), ensure_ascii=False)


#: Series labels → their JSON (a pusher sends the same series every time, so each is encoded once).
_LABELS_JSON: dict[Labels, str] = {}
_CACHE_MAX: Final = 200_000


def _labels_json(labels: Labels) -> str:
    text = _LABELS_JSON.get(labels)
    if text is None:
        if len(_LABELS_JSON) >= _CACHE_MAX:
            _LABELS_JSON.clear()
        text = _LABELS_JSON[labels] = json.dumps(_pairs(labels), separators=(",", ":"), ensure_ascii=False)
    return text


def _num(v: float) -> str:
    """A value as :func:`json.dumps` writes it (NaN and ±Infinity included)."""
    if v != v:
        return "NaN"
    if v in (math.inf, -math.inf):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(float(v))


def _dump(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def encode(group: Group) -> str:
    """One group as JSON. Values keep NaN and ±Inf (Python's JSON extension; the column is text). Built
    from cached per-series fragments: this runs once per push, inside the push's lock."""
    series = ",".join(f"[{_labels_json(s)},{_dump(group.family[s])},{_num(v)}]" for s, v in group.series.items())
    head = _dump({
        "v": _FORMAT,
        "key": _pairs(group.key),
        "tenant": list(group.tenant) if group.tenant is not None else None,
        "families": group.families,
        "push_time": group.push_time,
        "failure_time": group.failure_time,
        "last_activity": group.last_activity,
        "last_t_ms": group.last_t_ms,
        "last_write": group.last_write,
    })
    return f'{head[:-1]},"series":[{series}]}}'


def decode(text: str) -> Group:
    """The group :func:`encode` wrote."""
    d = json.loads(text)
    if d.get("v") != _FORMAT:
        raise ValueError(f"stored push group has format {d.get('v')!r}, this version reads {_FORMAT}")
    tenant = d["tenant"]
    group = Group(_labels(d["key"]), tenant=(str(tenant[0]), str(tenant[1])) if tenant else None)
    group.families = {str(k): str(v) for k, v in d["families"].items()}
    for pairs, fam, value in d["series"]:
        labels = _labels(pairs)
        group.series[labels] = float(value)
        group.family[labels] = str(fam)
    group.push_time = float(d["push_time"])
    group.failure_time = float(d["failure_time"])
    group.last_activity = float(d["last_activity"])
    group.last_t_ms = int(d["last_t_ms"])
    group.last_write = float(d["last_write"])
    return group


def change_for(plans: Iterable[Plan], expect: int) -> StateChange:
    """The stored-state change that commits with ``plans``' samples, planned against generation ``expect``."""
    change = StateChange(NAMESPACE, expect)
    last_t = 0
    for plan in plans:
        last_t = max(last_t, plan.t_ms)
        for key, after in plan.changes.items():
            k = row_key(key)
            if after is None:
                change.puts.pop(k, None)
                change.deletes.append(k)
            else:
                change.puts[k] = encode(after)
                if k in change.deletes:
                    change.deletes.remove(k)
    change.puts[LAST_T_KEY] = str(last_t)
    return change


def load(groups: Groups, snap: StateSnapshot) -> None:
    """Bring ``groups`` up to date with ``snap`` (all of it when ``snap.full``)."""
    if snap.full:
        groups.clear()
    for k, value in snap.rows.items():
        if k == LAST_T_KEY:
            if value is not None:
                groups.last_t = max(groups.last_t, int(value))
            continue
        if value is None:
            groups.remove(_labels(json.loads(k)))
        else:
            groups.install(decode(value))


__all__ = ["LAST_T_KEY", "NAMESPACE", "change_for", "decode", "encode", "load", "row_key"]
