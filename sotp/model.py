"""The data model shared by every write and read path: labels, matchers, samples, staleness.

Labels follow Prometheus's rules: metric names match ``[a-zA-Z_:][a-zA-Z0-9_:]*``, label names
``[a-zA-Z_][a-zA-Z0-9_]*``; an empty value means the label is absent, so it is never stored.
"""

from __future__ import annotations

import math
import re
import struct
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Final

from sotp.regex import PromRegex, compile_prom

if TYPE_CHECKING:
    # numpy is imported lazily (in stale_mask) because it costs ~15 MB of RSS, and the agent, which
    # imports this module through the codecs, must stay below node_exporter's footprint.
    import numpy as np
    import numpy.typing as npt

METRIC_NAME_RE: Final = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
METRIC_NAME: Final = "__name__"

#: Prometheus's staleness marker: a signalling NaN with this exact bit pattern. ``math.isnan``
#: cannot tell it from other NaNs, so compare bits with :func:`is_stale`.
STALE_NAN_BITS: Final = 0x7FF0000000000002
STALE_NAN: Final[float] = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]


def is_stale(value: float) -> bool:
    """Whether ``value`` is the staleness marker (bit-exact, not just any NaN)."""
    return math.isnan(value) and struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_NAN_BITS


def stale_mask(values: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Element-wise :func:`is_stale` over a float64 array, without any arithmetic on the NaNs."""
    import numpy as np

    mask: npt.NDArray[np.bool_] = values.view(np.uint64) == np.uint64(STALE_NAN_BITS)
    return mask


class InvalidLabels(ValueError):
    """A label set breaks Prometheus's naming rules; the message names the label and the rule."""


def validate_label_name(name: str) -> None:
    """Raise :class:`InvalidLabels` unless ``name`` is a valid label name."""
    if not LABEL_NAME_RE.match(name):
        raise InvalidLabels(f"invalid label name {name!r}: must match [a-zA-Z_][a-zA-Z0-9_]*")


def escape_label_value(value: str) -> str:
    """Escape a label value for the text exposition format and PromQL selectors."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Labels(Mapping[str, str]):
    """An immutable, sorted, hashable label set, including ``__name__`` when present.

    Empty values are dropped on construction (an empty value means absent). Construction does
    not validate names; call :meth:`validate` on untrusted input.
    """

    __slots__ = ("__weakref__", "_hash", "_items")

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: tuple[tuple[str, str], ...] = tuple(sorted((k, v) for k, v in pairs if v != ""))
        self._hash = hash(self._items)

    @classmethod
    def from_sorted(cls, items: tuple[tuple[str, str], ...]) -> Labels:
        """Build from pairs already sorted by name with no empty values (no copy, no checks)."""
        obj = cls.__new__(cls)
        obj._items = items
        obj._hash = hash(items)
        return obj

    def validate(self) -> None:
        """Raise :class:`InvalidLabels` for an empty set, a bad metric name or a bad label name."""
        if not self._items:
            raise InvalidLabels("empty label set: a series needs at least __name__")
        for name, value in self._items:
            if name == METRIC_NAME:
                if not METRIC_NAME_RE.match(value):
                    raise InvalidLabels(f"invalid metric name {value!r}: must match [a-zA-Z_:][a-zA-Z0-9_:]*")
            else:
                validate_label_name(name)

    @property
    def name(self) -> str | None:
        """The metric name (``__name__``), or None."""
        for k, v in self._items:
            if k == METRIC_NAME:
                return v
        return None

    def items_tuple(self) -> tuple[tuple[str, str], ...]:
        """The sorted ``(name, value)`` pairs."""
        return self._items

    def without(self, *names: str) -> Labels:
        """A copy without the given label names."""
        drop = set(names)
        return Labels.from_sorted(tuple(p for p in self._items if p[0] not in drop))

    def only(self, names: Iterable[str]) -> Labels:
        """A copy keeping only the given label names."""
        keep = set(names)
        return Labels.from_sorted(tuple(p for p in self._items if p[0] in keep))

    def with_(self, **updates: str) -> Labels:
        """A copy with labels set (an empty value removes the label)."""
        d = dict(self._items)
        d.update(updates)
        return Labels(d)

    def merged(self, other: Mapping[str, str]) -> Labels:
        """A copy with ``other``'s labels set over this set's (empty values remove)."""
        d = dict(self._items)
        d.update(other)
        return Labels(d)

    def __getitem__(self, key: str) -> str:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        for k, v in self._items:
            if k == key:
                return v
        return default

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Labels):
            return self._items == other._items
        return NotImplemented

    def __lt__(self, other: Labels) -> bool:
        return self._items < other._items

    def __str__(self) -> str:
        name = self.name
        inner = ", ".join(f'{k}="{escape_label_value(v)}"' for k, v in self._items if k != METRIC_NAME)
        if name is not None:
            return f"{name}{{{inner}}}" if inner else name
        return "{" + inner + "}"

    def __repr__(self) -> str:
        return f"Labels({dict(self._items)!r})"


_INTERNED: weakref.WeakValueDictionary[Labels, Labels] = weakref.WeakValueDictionary()


def intern_labels(labels: Labels) -> Labels:
    """The one live object equal to ``labels``.

    Write paths look up thousands of label sets per request in dicts keyed by :class:`Labels`; CPython
    compares a found key by identity before calling ``__eq__`` (a Python call here), so when the decoder's
    cache and the series index hold the same objects, every lookup skips it. Label sets are interned where
    they are first built (a decoder cache miss, a series index load), not per request.
    """
    return _INTERNED.setdefault(labels, labels)


class MatchOp(Enum):
    """Label matcher operators, spelled as in PromQL."""

    EQ = "="
    NEQ = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True)
class Matcher:
    """One label matcher. Regexes are RE2, fully anchored, as in Prometheus (``^(?:re)$``, :mod:`sotp.regex`).

    A missing label matches as the empty string, so ``job=""`` selects series without ``job``.
    """

    name: str
    op: MatchOp
    value: str
    _re: PromRegex | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.op in (MatchOp.RE, MatchOp.NRE):
            try:
                object.__setattr__(self, "_re", compile_prom(self.value))
            except ValueError as err:
                raise ValueError(f"invalid regular expression in matcher {self}: {err}") from err

    @property
    def regex(self) -> PromRegex:
        """The compiled anchored regex, RE2 semantics (only for ``=~`` and ``!~``)."""
        if self._re is None:
            raise TypeError(f"matcher {self} is not a regex matcher")
        return self._re

    def matches(self, value: str) -> bool:
        """Whether a label value (``""`` when the label is missing) satisfies this matcher."""
        if self.op is MatchOp.EQ:
            return value == self.value
        if self.op is MatchOp.NEQ:
            return value != self.value
        hit = self.regex.matches(value)
        return hit if self.op is MatchOp.RE else not hit

    def matches_labels(self, labels: Labels) -> bool:
        """Whether the series with these labels satisfies this matcher."""
        return self.matches(labels.get(self.name, "") or "")

    def __str__(self) -> str:
        return f'{self.name}{self.op.value}"{escape_label_value(self.value)}"'


def matches_all(matchers: Iterable[Matcher], labels: Labels) -> bool:
    """Whether a label set satisfies every matcher."""
    return all(m.matches_labels(labels) for m in matchers)


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample: a series' labels, a timestamp in milliseconds and a float value."""

    labels: Labels
    t_ms: int
    value: float


@dataclass(slots=True)
class Series:
    """One series read from storage: labels and time-sorted arrays of equal length.

    ``timestamps`` are int64 milliseconds, strictly increasing; ``values`` are float64 and may
    contain staleness markers (compare bits with :func:`stale_mask`).
    """

    labels: Labels
    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
