"""A synthetic snmpsim recording for an snmp.yml module (not a test module).

For vendor modules with no recorded device in snmpsim-data, this writes a device that answers every
metric of the module: two rows per table, index sub-identifiers shaped by each index type (numbers,
length-prefixed or fixed or implied strings, MAC and IP addresses, the InetAddressType+InetAddress
pair), values shaped by each metric type, and the columns the lookups read. The values are arbitrary:
what the parity test checks is that SOTP and snmp_exporter read the same device the same way.
"""

from __future__ import annotations

from typing import Any

#: snmprec type tags (snmpsim's record format: ``oid|tag|value``, ``x`` suffix = hex value).
INTEGER, OCTETS, IPADDR, COUNTER32, COUNTER64, OPAQUE = "2", "4", "64", "65", "70", "68"


def index_suboids(index: dict[str, Any], row: int) -> list[int]:
    typ = index["type"]
    if typ in ("gauge", "counter", "Integer32", "Integer"):
        return [row]
    if typ == "EnumAsInfo":
        values = sorted(index.get("enum_values") or {row: ""})
        return [values[row % len(values)]]
    if typ == "PhysAddress48":
        return [0, 0x1A, 0x2B, 0x3C, 0x4D, row]
    if typ == "InetAddressIPv4":
        return [10, 0, 0, row]
    if typ == "InetAddressIPv6":
        return [0x20, 0x01, 0x0D, 0xB8] + [0] * 11 + [row]
    if typ == "InetAddress":
        return [1, 4, 10, 0, 0, row]
    if typ == "InetAddressMissingSize":
        return [1, 10, 0, 0, row]
    if typ in ("OctetString", "DisplayString"):
        text = list(f"r{row}".encode())
        size = index.get("fixed_size") or 0
        if size:
            return (text * size)[:size]
        if index.get("implied"):
            return text
        return [len(text), *text]
    raise ValueError(f"no synthetic index for type {typ}")


def value_for(typ: str, enum_values: dict[int, str] | None, seed: int) -> tuple[str, str]:
    """(snmprec tag, value) for a metric or lookup type."""
    if typ == "counter":
        return (COUNTER64 if seed % 2 else COUNTER32), str(1000 + 37 * seed)
    if typ in ("gauge", "EnumAsInfo", "EnumAsStateSet"):
        if enum_values:
            keys = sorted(enum_values)
            return INTEGER, str(keys[seed % len(keys)])
        return INTEGER, str(3 + seed % 11)
    if typ == "DisplayString":
        return OCTETS, f"text {seed}"
    if typ == "OctetString":
        return OCTETS + "x", f"{seed % 256:02x}00ff"
    if typ == "PhysAddress48":
        return OCTETS + "x", f"001a2b3c4d{seed % 256:02x}"
    if typ == "InetAddressIPv4":
        return IPADDR, f"192.0.2.{seed % 250 + 1}"
    if typ in ("InetAddress", "InetAddressMissingSize"):
        return OCTETS + "x", f"c00002{seed % 250 + 1:02x}"
    if typ == "InetAddressIPv6":
        return OCTETS + "x", "20010db8" + "00" * 11 + f"{seed % 256:02x}"
    if typ == "DateAndTime":
        return OCTETS + "x", f"07e9010{seed % 9 + 1}0c1e2d00"
    if typ == "Bits":
        return OCTETS + "x", f"{(0xA5 + seed) % 256:02x}"
    if typ in ("Float", "Double"):
        return OPAQUE + "x", "9f780441200000" if typ == "Float" else "9f7908402400000000000000"
    return OCTETS, f"value {seed}"


def synthesize(module: dict[str, Any], rows: int = 2) -> str:
    """The snmprec text of a device answering ``module`` (sorted by OID, as snmpsim needs)."""
    # sysUpTime.0 too, so that a readiness probe (snmpget sysUpTime.0) gets an answer.
    records: dict[str, tuple[str, str]] = {"1.3.6.1.2.1.1.3.0": ("67", "12345")}
    seed = 0
    for metric in module["metrics"]:
        indexes = metric.get("indexes") or []
        if metric["type"] not in ("gauge", "counter") and any(i["labelname"] == metric["name"] for i in indexes):
            # An index column rendered as a label: SMIv2 makes index columns not-accessible, so agents never
            # return them, and the label named like the metric would clash with the index label.
            continue
        for row in range(1, rows + 1 if indexes else 2):
            seed += 1
            label_oids: dict[str, list[int]] = {}
            suffix: list[int] = []
            for index in indexes:
                sub = index_suboids(index, row)
                label_oids[index["labelname"]] = sub
                suffix += sub
            instance = ".".join(map(str, suffix)) if indexes else "0"
            oid = f"{metric['oid']}.{instance}"
            records.setdefault(oid, value_for(metric["type"], metric.get("enum_values"), seed))
            if metric["type"] in ("InetAddress", "InetAddressMissingSize"):
                head, _, last = metric["oid"].rpartition(".")
                records[f"{head}.{int(last) - 1}.{instance}"] = (INTEGER, "1")  # InetAddressType ipv4(1)
            for lookup in metric.get("lookups") or []:
                if not lookup.get("labels") or not lookup.get("oid"):
                    continue
                sub = [o for label in lookup["labels"] for o in label_oids.get(label, [])]
                tag, value = value_for(lookup.get("type", "DisplayString"), None, seed + 100)
                key = f"{lookup['oid']}.{'.'.join(map(str, sub))}"
                tag, value = records.setdefault(key, (tag, value))
                label_oids[lookup["labelname"]] = [int(value)] if tag in (INTEGER, COUNTER32) else []
    ordered = sorted(records.items(), key=lambda kv: tuple(int(x) for x in kv[0].split(".")))
    return "".join(f"{oid}|{tag}|{value}\n" for oid, (tag, value) in ordered)
