"""Varbinds -> metric families: snmp_exporter's mapping rules as pure functions.

Nothing here does I/O. The rules follow snmp_exporter's ``collector`` package (v0.21 names and
types; invalid UTF-8 is sanitised to U+FFFD as since v0.24 instead of failing the scrape):

* a varbind belongs to the metric whose OID is its shortest prefix; the rest of its OID is the index;
* indexes become labels by type (integers, fixed or length-prefixed strings, MAC, IPv4/IPv6, enums);
* lookups read another column at the same index (``ifName`` for ``ifIndex``); a missing one is ``""``;
* counter/gauge take the number (Counter64 modulo 2^53 unless wrapping is off); string types become
  a label named like the metric with value 1; EnumAsInfo -> ``<name>_info``; EnumAsStateSet and Bits
  -> one series per enum value with 1/0;
* families and series are sorted as Go's registry does (family name; then label values).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from exporters.snmp.config import Index, Lookup, Metric, Module
from exporters.snmp.pdu import COUNTER64, OBJECT_IDENTIFIER, OPAQUE_DOUBLE, OPAQUE_FLOAT, Pdu
from sotp.codec.exposition import MetricFamily

#: Counter64 values wrap at 2^53 so that float64 holds them exactly (snmp_exporter#350).
FLOAT64_MANTISSA = 1 << 53

#: Types whose real type is given by the enum in the previous column (e.g. InetAddressType).
COMBINED_TYPE_MAPPING: dict[str, dict[int, str]] = {
    "InetAddress": {1: "InetAddressIPv4", 2: "InetAddressIPv6"},
    "InetAddressMissingSize": {1: "InetAddressIPv4", 2: "InetAddressIPv6"},
    "LldpPortId": {1: "DisplayString", 2: "DisplayString", 3: "PhysAddress48", 5: "DisplayString", 7: "DisplayString"},
}

_SURROGATES = re.compile("[\udc80-\udcff]+")
_GO_TEMPLATE = re.compile(r"\$(\$|\w+|\{(\w+)\})")
#: NTP counts seconds from 1900, Unix from 1970.
NTP_UNIX_OFFSET = 2208988800

Labels = dict[str, str]
Sample = tuple[str, str, str, Labels, float]  # family name, type, help, labels, value


def to_valid_utf8(raw: bytes) -> str:
    """Decode UTF-8, replacing each run of invalid bytes with one U+FFFD like Go's ``strings.ToValidUTF8``."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _SURROGATES.sub("\ufffd", raw.decode("utf-8", "surrogateescape"))


def pdu_value(pdu: Pdu, wrap_counters: bool = True) -> float:
    """The number of a varbind (``getPduValue``): Counter64 wrapped at 2^53, non-numbers are 0."""
    v = pdu.value
    if pdu.type == COUNTER64:
        assert isinstance(v, int)
        return float(v % FLOAT64_MANTISSA) if wrap_counters else float(v)
    if pdu.type in (OPAQUE_FLOAT, OPAQUE_DOUBLE):
        assert isinstance(v, float)
        return v
    return float(as_int(pdu))


def as_int(pdu: Pdu) -> int:
    """gosnmp's ``ToBigInt(value).Int64()``: integers as they are, numeric strings parsed, else 0."""
    v = pdu.value
    if isinstance(v, int):
        return v
    if isinstance(v, str) and pdu.type != OBJECT_IDENTIFIER:
        try:
            return int(v)
        except ValueError:
            return 0
    return 0


def _go_float_f(v: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)``: shortest digits, never an exponent."""
    text = repr(v)
    if "e" not in text and "E" not in text:
        return text[:-2] if text.endswith(".0") else text
    return format(v, "f").rstrip("0").rstrip(".")


def split_oid(oid: Sequence[int], count: int) -> tuple[list[int], list[int]]:
    """Head of exactly ``count`` sub-ids (right-padded with zeros: some agents drop trailing 0s) and the rest."""
    head = list(oid[:count])
    head.extend([0] * (count - len(head)))
    return head, list(oid[count:])


def index_oids_as_string(
    index_oids: Sequence[int], typ: str, fixed_size: int = 0, implied: bool = False,
    enum_values: Mapping[int, str] | None = None,
) -> tuple[str, list[int], list[int]]:
    """Render the leading sub-ids of an index as a label value; returns (value, used, remaining)."""
    mapping = COMBINED_TYPE_MAPPING.get(typ)
    if mapping is not None:
        sub, values = split_oid(index_oids, 1 if typ == "InetAddressMissingSize" else 2)
        real = mapping.get(sub[0])
        if real is not None:
            text, used, remaining = index_oids_as_string(values, real, 0, False, enum_values)
            return text, sub + used, remaining
        if typ == "InetAddressMissingSize":
            return index_oids_as_string(index_oids, "OctetString", 0, True, enum_values)
        return index_oids_as_string(index_oids, "OctetString", sub[1] + 2, False, enum_values)
    if typ in ("Integer32", "Integer", "gauge", "counter"):
        sub, rest = split_oid(index_oids, 1)
        return str(sub[0]), sub, rest
    if typ == "PhysAddress48":
        sub, rest = split_oid(index_oids, 6)
        return ":".join(f"{o & 0xFF:02X}" for o in sub), sub, rest
    if typ in ("OctetString", "DisplayString"):
        prefix: list[int] = []
        rest = list(index_oids)
        length = len(rest) if implied else fixed_size
        if length == 0:
            prefix, rest = split_oid(rest, 1)
            length = prefix[0]
        content, rest = split_oid(rest, length)
        raw = bytes(o & 0xFF for o in content)
        if typ == "DisplayString":
            return to_valid_utf8(raw), prefix + content, rest
        return ("0x" + raw.hex().upper() if raw else ""), prefix + content, rest
    if typ == "InetAddressIPv4":
        sub, rest = split_oid(index_oids, 4)
        return ".".join(str(o) for o in sub), sub, rest
    if typ == "InetAddressIPv6":
        sub, rest = split_oid(index_oids, 16)
        return ":".join(f"{sub[i] & 0xFF:02X}{sub[i + 1] & 0xFF:02X}" for i in range(0, 16, 2)), sub, rest
    if typ == "EnumAsInfo":
        sub, rest = split_oid(index_oids, 1)
        return (enum_values or {}).get(sub[0], str(sub[0])), sub, rest
    raise ValueError(f"unknown index type {typ!r}")


def value_as_string(pdu: Pdu, typ: str) -> str:
    """A varbind's value as label text (``pduValueAsString``)."""
    v = pdu.value
    if v is None:
        return ""
    if isinstance(v, bool):  # pragma: no cover - never produced by backends
        return str(int(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float_f(v)
    if isinstance(v, str):
        return v
    # Bytes: the common cases directly, the rest through the index renderer as upstream does.
    if typ == "DisplayString":
        return to_valid_utf8(v)
    if typ in ("", "OctetString", "Bits") or (typ not in INDEX_RENDERABLE):
        return "0x" + v.hex().upper() if v else ""
    return index_oids_as_string(list(v), typ)[0]


INDEX_RENDERABLE = frozenset(
    {"PhysAddress48", "InetAddressIPv4", "InetAddressIPv6", "InetAddress", "InetAddressMissingSize", "LldpPortId"}
)


def parse_date_and_time(raw: bytes) -> float:
    """RFC 2579 DateAndTime (8 or 11 bytes) -> Unix seconds, as snmp_exporter computes it with Go's
    ``time.Date``: out-of-range fields are normalised, not refused (an all-zero value, which agents
    send for "never", is year 0 month 0 day 0: -62169984000). Raises ValueError for
    a length other than 8/11 or a zone Go's ``time.Parse("-0700")`` refuses."""
    if len(raw) == 8:
        offset = 0
    elif len(raw) == 11:
        sign, hours, minutes = raw[8], raw[9], raw[10]
        if sign not in b"+-" or hours > 24 or minutes > 60:
            raise ValueError(f"invalid DateAndTime time zone {raw[8:]!r}")
        offset = (hours * 60 + minutes) * 60 * (1 if sign == ord("+") else -1)
    else:
        raise ValueError(f"invalid DateAndTime length {len(raw)}")
    year, month = int.from_bytes(raw[0:2], "big"), raw[2] - 1
    year, month = year + month // 12, month % 12 + 1
    days = _days_from_civil(year, month) + raw[3] - 1
    local_ns = (((days * 24 + raw[4]) * 60 + raw[5]) * 60 + raw[6]) * 10**9 + raw[7] * 10**8
    return float(local_ns // 10**9 - offset)


def _days_from_civil(year: int, month: int) -> int:
    """Days from 1970-01-01 to the first of ``month`` in the proleptic Gregorian calendar, any year."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_ntp_timestamp(raw: bytes) -> float:
    """RFC 5905 NTP timestamp (8 bytes: seconds since 1900, fraction) -> Unix seconds (whole)."""
    if len(raw) < 8:
        raise ValueError(f"invalid NTPTimeStamp length {len(raw)}")
    return float(int.from_bytes(raw[:4], "big") - NTP_UNIX_OFFSET)


def parse_date_with_pattern(text: str, pattern: str) -> float:
    """``ParseDateAndTime``: a date string read with a strftime pattern; UTC unless it carries a zone."""
    when = dt.datetime.strptime(text, pattern)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return float(int(when.timestamp()))


@functools.lru_cache(maxsize=1024)
def anchored(regex: str) -> re.Pattern[str]:
    """snmp_exporter compiles ``regex_extracts`` as ``^(?:regex)$`` (Go RE2: ASCII classes)."""
    return re.compile("^(?:" + regex + ")$", re.ASCII)


def _go_expand(template: str, match: re.Match[str]) -> str:
    """Go's ``Regexp.Expand``: ``$1``, ``${1}``, ``$name`` and ``${name}`` (the longest run of word characters
    names the group, so ``$1x`` is group ``1x``), ``$$`` is ``$``; an unknown group expands to nothing."""

    def repl(m: re.Match[str]) -> str:
        if m.group(1) == "$":
            return "$"
        key = m.group(2) or m.group(1)
        try:
            return match.group(int(key) if key.isdigit() else key) or ""
        except (IndexError, re.error):
            return ""

    return _GO_TEMPLATE.sub(repl, template)


@dataclass
class CompiledModule:
    """A module prepared for mapping: metrics by OID, and a shared label cache key per index shape."""

    module: Module
    by_oid: dict[str, Metric] = field(default_factory=dict)
    shape: dict[int, tuple[object, ...]] = field(default_factory=dict)
    #: Memo: an OID without its last sub-id (a table column) -> its match; columns repeat per row.
    _columns: dict[str, tuple[Metric, int] | None] = field(default_factory=dict)

    @classmethod
    def build(cls, module: Module) -> CompiledModule:
        c = cls(module)
        for m in module.metrics:
            c.by_oid.setdefault(m.oid, m)
            c.shape[id(m)] = (
                tuple((i.labelname, i.type, i.fixed_size, i.implied, tuple(sorted(i.enum_values.items())))
                      for i in m.indexes),
                tuple((tuple(lk.labels), lk.labelname, lk.oid, lk.type) for lk in m.lookups),
            )
        return c

    def match(self, oid: str) -> tuple[Metric, str] | None:
        """The metric whose OID is the shortest prefix of ``oid`` (on a sub-id boundary), and the suffix."""
        cut = oid.rfind(".")
        if cut > 0:
            column = oid[:cut]
            if column in self._columns:
                hit = self._columns[column]
            else:
                found = self._scan(column)
                hit = self._columns[column] = (found[0], len(found[0].oid)) if found else None
            if hit is not None:
                return hit[0], oid[hit[1] + 1 :]
        m = self.by_oid.get(oid)
        return (m, "") if m is not None else None

    def _scan(self, oid: str) -> tuple[Metric, str] | None:
        pos = oid.find(".")
        while pos != -1:
            m = self.by_oid.get(oid[:pos])
            if m is not None:
                return m, oid[pos + 1 :]
            pos = oid.find(".", pos + 1)
        m = self.by_oid.get(oid)
        return (m, "") if m is not None else None


def indexes_to_labels(
    index_oids: Sequence[int], indexes: Sequence[Index], lookups: Sequence[Lookup], oid_to_pdu: Mapping[str, Pdu]
) -> Labels:
    """Index sub-ids -> labels, then lookups of other columns at the same index."""
    labels: Labels = {}
    label_oids: dict[str, list[int]] = {}
    rest: Sequence[int] = index_oids
    for index in indexes:
        text, used, rest = index_oids_as_string(rest, index.type, index.fixed_size, index.implied, index.enum_values)
        labels[index.labelname] = text
        label_oids[index.labelname] = used
    for lookup in lookups:
        if not lookup.labels:
            labels.pop(lookup.labelname, None)
            continue
        oid = lookup.oid
        for label in lookup.labels:
            oid += "." + ".".join(str(o) for o in label_oids.get(label, []))
        found = oid_to_pdu.get(oid)
        if found is not None:
            labels[lookup.labelname] = value_as_string(found, lookup.type)
            label_oids[lookup.labelname] = [as_int(found)]
        else:
            labels[lookup.labelname] = ""
    return labels


def pdu_to_samples(
    index_oids: Sequence[int], pdu: Pdu, metric: Metric, oid_to_pdu: Mapping[str, Pdu],
    wrap_counters: bool = True, labels: Labels | None = None,
) -> list[Sample]:
    """Samples for one varbind of ``metric`` (``labels`` may be given precomputed from the same index)."""
    if labels is None:
        labels = indexes_to_labels(index_oids, metric.indexes, metric.lookups, oid_to_pdu)
    name, typ = metric.name, metric.type
    if typ in ("counter", "gauge", "Float", "Double"):
        kind = "counter" if typ == "counter" else "gauge"
        return [(name, kind, metric.help, labels, scaled(metric, pdu_value(pdu, wrap_counters)))]
    if typ in ("DateAndTime", "NTPTimeStamp", "ParseDateAndTime"):
        raw = pdu.value
        try:
            if typ == "ParseDateAndTime":
                value = parse_date_with_pattern(value_as_string(pdu, "DisplayString"), metric.datetime_pattern)
            elif not isinstance(raw, bytes):
                return []
            elif typ == "DateAndTime":
                value = parse_date_and_time(raw)
            else:
                value = parse_ntp_timestamp(raw)
        except ValueError:
            return []
        return [(name, "gauge", metric.help, labels, scaled(metric, value))]
    if typ == "EnumAsInfo":
        value = int(pdu_value(pdu, wrap_counters))
        state = metric.enum_values.get(value, str(value))
        return [(name + "_info", "gauge", metric.help + " (EnumAsInfo)", {**labels, name: state}, 1.0)]
    if typ == "EnumAsStateSet":
        value = int(pdu_value(pdu, wrap_counters))
        help_ = metric.help + " (EnumAsStateSet)"
        out: list[Sample] = [(name, "gauge", help_, {**labels, name: metric.enum_values.get(value, str(value))}, 1.0)]
        out += [(name, "gauge", help_, {**labels, name: s}, 0.0) for k, s in metric.enum_values.items() if k != value]
        return out
    if typ == "Bits":
        raw = pdu.value
        if not isinstance(raw, bytes):
            return []
        help_ = metric.help + " (Bits)"
        return [
            (name, "gauge", help_, {**labels, name: s},
             1.0 if k < len(raw) * 8 and raw[k // 8] & (128 >> (k % 8)) else 0.0)
            for k, s in metric.enum_values.items()
        ]
    # A string type: the value becomes a label named like the metric.
    mapping = COMBINED_TYPE_MAPPING.get(typ)
    if mapping is not None:
        head, _, last = metric.oid.rpartition(".")
        prev = oid_to_pdu.get(f"{head}.{int(last) - 1}" + ("." + ".".join(map(str, index_oids)) if index_oids else ""))
        typ = mapping.get(as_int(prev), "OctetString") if prev is not None else "OctetString"
    text = value_as_string(pdu, typ)
    if metric.regex_extracts:
        return regex_extract_samples(metric, text, labels)
    # (snmp_exporter scales the 1 of a string too.)
    if name in labels:
        return [(name, "gauge", metric.help, labels, scaled(metric, 1.0))]
    return [(name, "gauge", metric.help, {**labels, name: text}, scaled(metric, 1.0))]


def go_parse_float(text: str) -> float:
    """Go's ``strconv.ParseFloat``: no surrounding spaces or digit separators (Python's float allows both)."""
    if text != text.strip() or "_" in text:
        raise ValueError(f"invalid float {text!r}")
    return float(text)


def scaled(metric: Metric, value: float) -> float:
    """``scale`` (when set) then ``offset``, as snmp_exporter applies them."""
    if metric.scale:
        value *= metric.scale
    return value + metric.offset


def regex_extract_samples(metric: Metric, text: str, labels: Labels) -> list[Sample]:
    """``regex_extracts``: for each suffix, the first regex that matches and parses as a float wins."""
    out: list[Sample] = []
    for suffix, extracts in metric.regex_extracts.items():
        for ex in extracts:
            m = anchored(ex.regex).search(text)
            if m is None:
                continue
            try:
                value = go_parse_float(_go_expand(ex.value, m))
            except ValueError:
                continue
            out.append((metric.name + suffix, "gauge", metric.help + " (regex extracted)", labels, value))
            break
    return out


def _sample_key(sample: tuple[str, Mapping[str, str], float]) -> tuple[int, tuple[str, ...]]:
    return len(sample[1]), tuple(sample[1].values())


def collect(compiled: CompiledModule, pdus: Iterable[Pdu], wrap_counters: bool = True) -> list[Sample]:
    """All samples of one module's varbinds (unsorted). Duplicate OIDs keep the last varbind."""
    oid_to_pdu = {p.oid: p for p in pdus}
    cache: dict[tuple[object, ...], Labels] = {}
    out: list[Sample] = []
    for oid, pdu in oid_to_pdu.items():
        hit = compiled.match(oid)
        if hit is None:
            continue
        metric, suffix = hit
        index_oids = [int(x) for x in suffix.split(".")] if suffix else []
        key = (compiled.shape[id(metric)], suffix)
        labels = cache.get(key)
        if labels is None:
            labels = indexes_to_labels(index_oids, metric.indexes, metric.lookups, oid_to_pdu)
            cache[key] = labels
        out.extend(pdu_to_samples(index_oids, pdu, metric, oid_to_pdu, wrap_counters, labels))
    return out


def to_families(samples: Iterable[Sample]) -> list[MetricFamily]:
    """Group samples into families sorted like Go's registry; label names sorted; duplicates dropped.

    The first sample of a name fixes the family's type and help (upstream would fail the scrape on a
    conflict; a dropped duplicate is the friendlier choice for one bad column)."""
    families: dict[str, MetricFamily] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for name, kind, help_, labels, value in samples:
        fam = families.get(name)
        if fam is None:
            fam = families[name] = MetricFamily(name, kind, help_)
        items = tuple(sorted(labels.items()))
        if (name, items) in seen:
            continue
        seen.add((name, items))
        fam.samples.append((name, dict(items), value))
    for fam in families.values():
        fam.samples.sort(key=_sample_key)
    return [families[n] for n in sorted(families)]
