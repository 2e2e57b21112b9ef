"""Case tables for the pure varbind -> sample mapping (snmp_exporter's collector rules).

Expected values follow snmp_exporter's collector (v0.21; UTF-8 sanitising as in v0.24+): index
rendering, value rendering, Counter64 wrapping, lookups and the special metric types.
"""

from __future__ import annotations

from typing import Any

import pytest

from exporters.snmp.collector import (
    CompiledModule,
    collect,
    index_oids_as_string,
    indexes_to_labels,
    parse_date_and_time,
    pdu_to_samples,
    pdu_value,
    to_families,
    to_valid_utf8,
    value_as_string,
)
from exporters.snmp.config import Index, Lookup, Metric, Module, RegexpExtract
from exporters.snmp.pdu import Pdu
from sotp.codec.exposition import format_families

INDEX_CASES = [
    # (index oids, type, fixed_size, implied, enums) -> (text, used, remaining)
    ("integer", [5, 7], "gauge", 0, False, None, ("5", [5], [7])),
    ("integer32", [42], "Integer32", 0, False, None, ("42", [42], [])),
    ("integer-missing-pads-zero", [], "Integer", 0, False, None, ("0", [0], [])),
    ("mac", [0, 17, 34, 51, 68, 255, 9], "PhysAddress48", 0, False, None,
     ("00:11:22:33:44:FF", [0, 17, 34, 51, 68, 255], [9])),
    ("octets-length-prefixed", [3, 65, 66, 67, 1], "OctetString", 0, False, None, ("0x414243", [3, 65, 66, 67], [1])),
    ("octets-empty", [0, 9], "OctetString", 0, False, None, ("", [0], [9])),
    ("octets-fixed", [1, 2, 3], "OctetString", 2, False, None, ("0x0102", [1, 2], [3])),
    ("display-length-prefixed", [2, 104, 105, 7], "DisplayString", 0, False, None, ("hi", [2, 104, 105], [7])),
    ("display-implied", [104, 105], "DisplayString", 0, True, None, ("hi", [104, 105], [])),
    ("display-invalid-utf8", [3, 97, 255, 254], "DisplayString", 0, False, None, ("a\ufffd", [3, 97, 255, 254], [])),
    ("ipv4", [10, 0, 0, 1, 5], "InetAddressIPv4", 0, False, None, ("10.0.0.1", [10, 0, 0, 1], [5])),
    ("ipv6", [32, 1, 13, 184] + [0] * 11 + [1], "InetAddressIPv6", 0, False, None,
     ("2001:0DB8:0000:0000:0000:0000:0000:0001", [32, 1, 13, 184] + [0] * 11 + [1], [])),
    ("inetaddress-v4", [1, 4, 192, 168, 1, 2, 9], "InetAddress", 0, False, None,
     ("192.168.1.2", [1, 4, 192, 168, 1, 2], [9])),
    ("inetaddress-unknown-type-as-octets", [9, 2, 1, 2], "InetAddress", 0, False, None,
     ("0x09020102", [9, 2, 1, 2], [])),
    ("inetaddress-missing-size", [1, 10, 1, 1, 1], "InetAddressMissingSize", 0, False, None,
     ("10.1.1.1", [1, 10, 1, 1, 1], [])),
    ("lldp-mac", [3, 6, 1, 2, 3, 4, 5, 6], "LldpPortId", 0, False, None,
     ("01:02:03:04:05:06", [3, 6, 1, 2, 3, 4, 5, 6], [])),
    ("enum-known", [2, 8], "EnumAsInfo", 0, False, {2: "down"}, ("down", [2], [8])),
    ("enum-unknown", [7], "EnumAsInfo", 0, False, {2: "down"}, ("7", [7], [])),
]


@pytest.mark.parametrize(
    ("oids", "typ", "fixed", "implied", "enums", "want"), [c[1:] for c in INDEX_CASES], ids=[c[0] for c in INDEX_CASES]
)
def test_index_oids_as_string(
    oids: list[int], typ: str, fixed: int, implied: bool, enums: dict[int, str] | None, want: tuple[str, Any, Any]
) -> None:
    assert index_oids_as_string(oids, typ, fixed, implied, enums) == want


VALUE_CASES = [
    ("int", Pdu("1", "Integer", -3), "", "-3"),
    ("display", Pdu("1", "OctetString", b"Gi0/1"), "DisplayString", "Gi0/1"),
    ("display-invalid", Pdu("1", "OctetString", b"ok\xff\xfe"), "DisplayString", "ok\ufffd"),
    ("octets-default-hex", Pdu("1", "OctetString", b"\x01\xab"), "", "0x01AB"),
    ("octets-empty", Pdu("1", "OctetString", b""), "OctetString", ""),
    ("mac", Pdu("1", "OctetString", bytes([0xE8, 4, 0x62, 0x78, 0xF2, 1])), "PhysAddress48", "E8:04:62:78:F2:01"),
    ("mac-short-pads", Pdu("1", "OctetString", b""), "PhysAddress48", "00:00:00:00:00:00"),
    ("ipv4-bytes", Pdu("1", "OctetString", bytes([10, 1, 2, 3])), "InetAddressIPv4", "10.1.2.3"),
    ("oid", Pdu("1", "ObjectIdentifier", "0.0"), "OctetString", "0.0"),
    ("ipaddress", Pdu("1", "IpAddress", "192.0.2.1"), "IpAddr", "192.0.2.1"),
    ("float", Pdu("1", "OpaqueFloat", 0.25), "Float", "0.25"),
    ("float-big-no-exponent", Pdu("1", "OpaqueDouble", 1e21), "Double", "1000000000000000000000"),
    ("null", Pdu("1", "Null", None), "", ""),
]


@pytest.mark.parametrize(("pdu", "typ", "want"), [c[1:] for c in VALUE_CASES], ids=[c[0] for c in VALUE_CASES])
def test_value_as_string(pdu: Pdu, typ: str, want: str) -> None:
    assert value_as_string(pdu, typ) == want


NUMBER_CASES = [
    ("counter64-wraps-at-2^53", Pdu("1", "Counter64", 2**64 - 1), True, float((2**64 - 1) % 2**53)),
    ("counter64-below-2^53", Pdu("1", "Counter64", 2**53 - 1), True, float(2**53 - 1)),
    ("counter64-unwrapped", Pdu("1", "Counter64", 2**64 - 1), False, float(2**64 - 1)),
    ("counter32", Pdu("1", "Counter32", 4294967295), True, 4294967295.0),
    ("timeticks", Pdu("1", "TimeTicks", 956), True, 956.0),
    ("negative-integer", Pdu("1", "Integer", -5), True, -5.0),
    ("string-is-zero", Pdu("1", "OctetString", b"12"), True, 0.0),
    ("ipaddress-is-zero", Pdu("1", "IpAddress", "10.0.0.1"), True, 0.0),
    ("opaque-float", Pdu("1", "OpaqueFloat", 1.5), True, 1.5),
]


@pytest.mark.parametrize(("pdu", "wrap", "want"), [c[1:] for c in NUMBER_CASES], ids=[c[0] for c in NUMBER_CASES])
def test_pdu_value(pdu: Pdu, wrap: bool, want: float) -> None:
    assert pdu_value(pdu, wrap) == want


def test_to_valid_utf8_collapses_runs_like_go() -> None:
    # Go's strings.ToValidUTF8 replaces each run of invalid bytes with one replacement character.
    assert to_valid_utf8(b"a\xff\xfe\xfdb\xc3") == "a\ufffdb\ufffd"
    assert to_valid_utf8("é".encode()) == "é"


IF_INDEX = [Index(labelname="ifIndex", type="gauge")]
IF_LOOKUPS = [
    Lookup(labels=["ifIndex"], labelname="ifDescr", oid="1.2.2", type="DisplayString"),
    Lookup(labels=["ifIndex"], labelname="ifName", oid="1.3.1", type="DisplayString"),
]
TABLE = {
    "1.2.2.7": Pdu("1.2.2.7", "OctetString", b"GigabitEthernet0/7"),
    # ifName missing at index 7: the label is present and empty.
}


def test_lookups_fill_labels_and_missing_lookup_is_empty() -> None:
    assert indexes_to_labels([7], IF_INDEX, IF_LOOKUPS, TABLE) == {
        "ifIndex": "7", "ifDescr": "GigabitEthernet0/7", "ifName": ""}


def test_lookup_without_labels_drops_the_label() -> None:
    drop = [Lookup(labels=[], labelname="ifIndex")]
    assert indexes_to_labels([7], IF_INDEX, [*IF_LOOKUPS, *drop], TABLE) == {
        "ifDescr": "GigabitEthernet0/7", "ifName": ""}


def test_chained_lookup_uses_the_previous_lookup_value() -> None:
    # entPhysicalIndex-style chain: index -> a number in another table -> that table's name.
    lookups = [
        Lookup(labels=["idx"], labelname="phys", oid="9.1", type="gauge"),
        Lookup(labels=["phys"], labelname="physName", oid="9.2", type="DisplayString"),
    ]
    table = {"9.1.4": Pdu("9.1.4", "Integer", 1001), "9.2.1001": Pdu("9.2.1001", "OctetString", b"slot1")}
    labels = indexes_to_labels([4], [Index(labelname="idx", type="Integer")], lookups, table)
    assert labels == {"idx": "4", "phys": "1001", "physName": "slot1"}


def _m(typ: str, **kw: Any) -> Metric:
    return Metric(name="m", oid="1.1", type=typ, help="h", **kw)


SAMPLE_CASES = [
    ("counter", _m("counter"), Pdu("1.1.0", "Counter32", 5), [("m", "counter", "h", {}, 5.0)]),
    ("gauge", _m("gauge"), Pdu("1.1.0", "Gauge32", 5), [("m", "gauge", "h", {}, 5.0)]),
    ("string-becomes-label", _m("DisplayString"), Pdu("1.1.0", "OctetString", b"x"),
     [("m", "gauge", "h", {"m": "x"}, 1.0)]),
    ("enum-as-info", _m("EnumAsInfo", enum_values={1: "up", 2: "down"}), Pdu("1.1.0", "Integer", 2),
     [("m_info", "gauge", "h (EnumAsInfo)", {"m": "down"}, 1.0)]),
    ("enum-as-info-unknown", _m("EnumAsInfo", enum_values={1: "up"}), Pdu("1.1.0", "Integer", 9),
     [("m_info", "gauge", "h (EnumAsInfo)", {"m": "9"}, 1.0)]),
    ("enum-as-state-set", _m("EnumAsStateSet", enum_values={1: "up", 2: "down"}), Pdu("1.1.0", "Integer", 1),
     [("m", "gauge", "h (EnumAsStateSet)", {"m": "up"}, 1.0),
      ("m", "gauge", "h (EnumAsStateSet)", {"m": "down"}, 0.0)]),
    ("bits", _m("Bits", enum_values={0: "a", 1: "b", 9: "c", 20: "beyond"}), Pdu("1.1.0", "OctetString", b"\x80\x40"),
     [("m", "gauge", "h (Bits)", {"m": "a"}, 1.0), ("m", "gauge", "h (Bits)", {"m": "b"}, 0.0),
      ("m", "gauge", "h (Bits)", {"m": "c"}, 1.0), ("m", "gauge", "h (Bits)", {"m": "beyond"}, 0.0)]),
    ("date-and-time-utc", _m("DateAndTime"), Pdu("1.1.0", "OctetString", bytes([7, 234, 11, 27, 2, 30, 0, 5])),
     [("m", "gauge", "h", {}, 1795746600.0)]),
    ("date-and-time-bad-length-dropped", _m("DateAndTime"), Pdu("1.1.0", "OctetString", b"\x07"), []),
    ("regex-extract", _m("DisplayString", regex_extracts={"_temp": [RegexpExtract(regex=".*?(\\d+) C", value="$1")]}),
     Pdu("1.1.0", "OctetString", b"board 42 C"), [("m_temp", "gauge", "h (regex extracted)", {}, 42.0)]),
    # snmp_exporter compiles the regex as ^(?:regex)$: a partial match is no match.
    ("regex-extract-is-anchored", _m("DisplayString", regex_extracts={"_t": [RegexpExtract(regex="(\\d+) C")]}),
     Pdu("1.1.0", "OctetString", b"board 42 C"), []),
    # Go's template: $1x names group "1x" (empty), ${1}x is group 1 then x; ParseFloat refuses "4_2".
    ("regex-extract-go-template", _m("DisplayString", regex_extracts={
        "_a": [RegexpExtract(regex="(\\d)(\\d)", value="${1}0$2")], "_b": [RegexpExtract(regex="(\\d+)", value="$1x")],
        "_c": [RegexpExtract(regex="(\\d)(\\d)", value="${1}_${2}")]}),
     Pdu("1.1.0", "OctetString", b"42"), [("m_a", "gauge", "h (regex extracted)", {}, 402.0)]),
    ("regex-extract-no-match", _m("DisplayString", regex_extracts={"_x": [RegexpExtract(regex="nomatch")]}),
     Pdu("1.1.0", "OctetString", b"abc"), []),
]


@pytest.mark.parametrize(("metric", "pdu", "want"), [c[1:] for c in SAMPLE_CASES], ids=[c[0] for c in SAMPLE_CASES])
def test_pdu_to_samples(metric: Metric, pdu: Pdu, want: list[Any]) -> None:
    assert pdu_to_samples([0], pdu, metric, {}) == want


def test_date_and_time_with_time_zone() -> None:
    # 2026-11-27 03:30:00 +01:00 == 02:30:00 UTC
    raw = bytes([7, 234, 11, 27, 3, 30, 0, 0, ord("+"), 1, 0])
    assert parse_date_and_time(raw) == 1795746600.0


def test_combined_type_uses_previous_column() -> None:
    # InetAddress value typed by the InetAddressType column just before it (1 = ipv4).
    metric = Metric(name="addr", oid="5.2", type="InetAddress", indexes=[Index(labelname="i", type="gauge")])
    table = {"5.1.3": Pdu("5.1.3", "Integer", 1)}
    samples = pdu_to_samples([3], Pdu("5.2.3", "OctetString", bytes([10, 0, 0, 9])), metric, table)
    assert samples[0][3] == {"i": "3", "addr": "10.0.0.9"}


def test_collect_matches_shortest_prefix_ignores_others_and_sorts_like_go() -> None:
    module = Module(metrics=[
        Metric(name="ifOperStatus", oid="1.3.6.1.2.1.2.2.1.8", type="gauge", help="s",
               indexes=list(IF_INDEX), lookups=[Lookup(labels=["ifIndex"], labelname="ifDescr",
                                                       oid="1.3.6.1.2.1.2.2.1.2", type="DisplayString")]),
        Metric(name="sysUpTime", oid="1.3.6.1.2.1.1.3", type="gauge", help="u"),
    ])
    pdus = [
        Pdu("1.3.6.1.2.1.2.2.1.2.10", "OctetString", b"b"),
        Pdu("1.3.6.1.2.1.2.2.1.2.2", "OctetString", b"a"),
        Pdu("1.3.6.1.2.1.2.2.1.8.10", "Integer", 2),
        Pdu("1.3.6.1.2.1.2.2.1.8.2", "Integer", 1),
        Pdu("1.3.6.1.2.1.1.3.0", "TimeTicks", 100),
        Pdu("1.3.6.1.2.1.1.5.0", "OctetString", b"unmapped"),
    ]
    text = format_families(to_families(collect(CompiledModule.build(module), pdus)))
    # Families by name; series by label values as strings ("10" < "2"), label names sorted.
    assert text == (
        "# HELP ifOperStatus s\n# TYPE ifOperStatus gauge\n"
        'ifOperStatus{ifDescr="a",ifIndex="2"} 1\n'
        'ifOperStatus{ifDescr="b",ifIndex="10"} 2\n'
        "# HELP sysUpTime u\n# TYPE sysUpTime gauge\nsysUpTime 100\n"
    )


def test_duplicate_series_are_dropped() -> None:
    fams = to_families([("a", "gauge", "", {"x": "1"}, 1.0), ("a", "gauge", "", {"x": "1"}, 2.0)])
    assert fams[0].samples == [("a", {"x": "1"}, 1.0)]
