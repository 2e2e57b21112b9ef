"""MIB objects -> snmp.yml modules, with the rules of snmp_exporter's generator (``generator/tree.go``).

For each module of ``generator.yml``:

1. ``walk`` entries (names, ``MODULE::name`` or OIDs) are reduced to the smallest set of subtrees; each
   is a scalar (fetched as ``oid.0`` with GET), a table instance (``column.index``, GET) or a subtree;
2. every accessible object below them with a usable type becomes a metric: name = label (characters
   outside ``[a-zA-Z0-9_]`` become ``_``), help = the description's first sentence + `` - `` + OID,
   type from net-snmp's type as refined by hints and textual conventions, indexes from the entry
   (an ``InetAddressType`` index followed by an ``InetAddress`` becomes one ``InetAddress`` index);
3. ``lookups`` whose source indexes a metric has add a label read from another column (chained when a
   lookup's result is itself a source index; ``drop_source_indexes`` removes the index labels), and
   the looked-up columns are walked too;
4. an ``InetAddress`` column whose previous column is not an ``InetAddressType`` becomes ``OctetString``;
5. ``overrides`` set types (before 2), drop metrics (``ignore``), and add ``regex_extracts``,
   ``datetime_pattern``, ``offset``, ``scale``, ``help`` and ``name``;
6. static ``filters`` replace the walk of a column by GETs of the listed indices; dynamic ones are
   copied to the module for the exporter;
7. the OIDs to fetch are minimised again and split into ``walk`` and ``get``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from exporters.snmp.generator.config import GeneratorConfig, ModuleConfig
from exporters.snmp.mib.tree import Node

log = logging.getLogger("sotp.snmp.generator")

#: Types made of two columns: the one before gives the real type (RFC 4001, LLDP-MIB).
COMBINED_TYPES = {"InetAddress": "InetAddressType", "InetAddressMissingSize": "InetAddressType",
                  "LldpPortId": "LldpPortIdSubtype"}
_GAUGE = frozenset({"gauge", "INTEGER", "GAUGE", "TIMETICKS", "UINTEGER", "UNSIGNED32", "INTEGER32"})
_COUNTER = frozenset({"counter", "COUNTER", "COUNTER64"})
_AS_IS = frozenset({"PhysAddress48", "DisplayString", "Float", "Double", "InetAddressIPv6", "DateAndTime",
                    "ParseDateAndTime", "NTPTimeStamp", "EnumAsInfo", "EnumAsStateSet"})
_ACCESSIBLE = frozenset({"ACCESS_READONLY", "ACCESS_READWRITE", "ACCESS_CREATE", "ACCESS_NOACCESS"})
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


class GeneratorError(Exception):
    """A module cannot be generated; the message names the module, the entry and the MIB object."""


def metric_type(t: str) -> str | None:
    """snmp.yml type for a net-snmp type (or an override's type); None when it cannot be a metric."""
    if t in COMBINED_TYPES or t in _AS_IS:
        return t
    if t in _GAUGE:
        return "gauge"
    if t in _COUNTER:
        return "counter"
    if t in ("OctetString", "OCTETSTR", "OBJID"):
        return "OctetString"
    if t == "BITSTRING":
        return "Bits"
    if t in ("InetAddressIPv4", "IpAddr", "IPADDR", "NETADDR"):
        return "InetAddressIPv4"
    return None


def sanitize_label_name(name: str) -> str:
    return _INVALID_LABEL_CHARS.sub("_", name)


def minimize_oids(oids: list[str]) -> list[str]:
    """Sorted (as strings), without OIDs inside an earlier subtree. A trailing ``.`` marks a GET."""
    out: list[str] = []
    prev = ""
    for oid in sorted(oids):
        if prev == "" or not (oid + ".").startswith(prev):
            out.append(oid)
            prev = oid + "."
    return out


def search_node_tree(oid: str, node: Node) -> Node | None:
    """The deepest node whose OID is a prefix of ``oid`` (on sub-identifier boundaries)."""
    target = oid + "."
    if not target.startswith(node.oid + "."):
        return None
    while True:
        for child in node.children:
            if target.startswith(child.oid + "."):
                node = child
                break
        else:
            return node


@dataclass
class ModuleGenerator:
    """Generates one module. ``names`` maps OIDs, labels and ``MODULE::label`` to nodes (shared, read-only);
    type overrides are kept here rather than written into the shared tree."""

    name: str
    cfg: ModuleConfig
    root: Node
    names: dict[str, Node]
    types: dict[int, str] = field(default_factory=dict)
    need: set[str] = field(default_factory=set)
    instances: dict[str, list[str]] = field(default_factory=dict)

    def type_of(self, node: Node) -> str:
        return self.types.get(id(node), node.type)

    def where(self, node: Node) -> str:
        return f"{node.module}::{node.label} ({node.source})" if node.source else node.label

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        for name, override in cfg.overrides.items():
            if not override.type:
                continue
            node = self.names.get(name)
            if node is None:
                log.warning("module %s: overrides.%s: no MIB object of that name to override the type of",
                            self.name, name)
                continue
            self.types[id(node)] = override.type
        walk = minimize_oids([self.names[o].oid if o in self.names else o for o in cfg.walk])
        tops: dict[int, Node] = {}
        for oid in walk:
            node, kind = self.metric_node(oid)
            if node is None:
                raise GeneratorError(f"module {self.name}: walk: cannot find oid '{oid}' to walk "
                                     "(no loaded MIB defines it: check the name and the -m directories)")
            if kind == "subtree":
                self.need.add(oid)
            elif kind == "instance":
                self.need.add(oid + ".")
                self.instances.setdefault(node.oid, []).append(oid.replace(node.oid, "", 1))
            else:
                self.need.add(oid + ".0.")
            tops[id(node)] = node
        metrics: list[dict[str, Any]] = []
        for top in sorted(tops.values(), key=lambda n: n.oid):
            for node in top.walk():
                metric = self.metric(node)
                if metric is not None:
                    metrics.append(metric)
        static = {}
        for f in cfg.filters.static:
            for target in f.targets:
                static[self.names[target].oid if target in self.names else target] = f.indices
        for metric in metrics:
            self.apply_lookups(metric, static)
        for metric in metrics:
            for index in metric.get("indexes", []):
                index["labelname"] = sanitize_label_name(index["labelname"])
        for metric in metrics:
            self.check_inet_address(metric)
        for name, override in cfg.overrides.items():
            for metric in metrics:
                if name not in (metric["name"], metric["oid"]):
                    continue
                metric["_regex_extracts"] = override.regex_extracts
                metric["_datetime_pattern"] = override.datetime_pattern
                metric["_offset"] = override.offset
                metric["_scale"] = override.scale
                if override.help:
                    metric["help"] = override.help
                if override.name:
                    metric["name"] = override.name
        for f in cfg.filters.static:
            for target in f.targets:
                oid = self.names[target].oid if target in self.names else target
                self.need.discard(oid)
                for index in f.indices:
                    self.need.add(f"{oid}.{index}.")
        return self.module(metrics)

    def metric_node(self, oid: str) -> tuple[Node | None, str]:
        node = self.names.get(oid)
        if node is not None:
            if metric_type(self.type_of(node)) and node.access in _ACCESSIBLE and not node.indexes:
                return node, "scalar"
            return node, "subtree"
        node = search_node_tree(oid, self.root)
        if node is None or not (metric_type(self.type_of(node)) and node.access in _ACCESSIBLE) or not node.indexes:
            return None, ""
        return node, "instance"

    def metric(self, node: Node) -> dict[str, Any] | None:
        typ = metric_type(self.type_of(node))
        if typ is None or node.access not in _ACCESSIBLE:
            return None
        name = sanitize_label_name(node.label)
        override = self.cfg.overrides.get(name)
        if override is not None and override.ignore:
            return None
        metric: dict[str, Any] = {"name": name, "oid": node.oid, "type": typ,
                                  "help": f"{node.description} - {node.oid}", "indexes": [], "lookups": [],
                                  "enum_values": dict(node.enum_values)}
        prev_type = prev2_type = ""
        for count, label in enumerate(node.indexes):
            index_node = self.names.get(label)
            if index_node is None:
                log.warning("module %s: %s: index %s is not in any loaded MIB; metric skipped",
                            self.name, self.where(node), label)
                return None
            index_type = metric_type(self.type_of(index_node))
            if index_type is None:
                log.warning("module %s: %s: cannot handle index %s of type %s; metric skipped",
                            self.name, self.where(node), label, self.type_of(index_node))
                return None
            index: dict[str, Any] = {"labelname": label, "type": index_type, "fixed_size": index_node.fixed_size,
                                     "implied": node.implied_index and count + 1 == len(node.indexes),
                                     "enum_values": dict(index_node.enum_values)}
            subtype = COMBINED_TYPES.get(index_type)
            if subtype is not None:
                if subtype == prev_type:
                    metric["indexes"] = metric["indexes"][:-1]
                elif subtype == prev2_type:
                    metric["indexes"] = metric["indexes"][:-2]
                else:
                    log.warning("module %s: %s: index %s of type %s needs a %s index before it; metric skipped",
                                self.name, self.where(node), label, index_type, subtype)
                    return None
            prev2_type, prev_type = prev_type, index_node.textual_convention
            metric["indexes"].append(index)
        return metric

    def index_node(self, label: str, metric_oid: str) -> Node:
        """The node named ``label`` in the metric's own table if there is one (labels repeat across MIBs)."""
        prefix = metric_oid.rsplit(".", 1)[0]
        seen: set[int] = set()
        for node in self.names.values():
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.label == label and node.oid.startswith(prefix):
                return node
        return self.names[label]

    def apply_lookups(self, metric: dict[str, Any], static: dict[str, list[str]]) -> None:
        required = [s for lookup in self.cfg.lookups for s in lookup.source_indexes]
        to_delete: list[str] = []
        for i, lookup in enumerate(self.cfg.lookups):
            found = sum(1 for index in metric["indexes"] for s in lookup.source_indexes if index["labelname"] == s)
            if found != len(lookup.source_indexes):
                continue
            if lookup.lookup not in self.names:
                raise GeneratorError(f"module {self.name}: lookups[{i}]: unknown index '{lookup.lookup}' "
                                     "(no loaded MIB defines it)")
            node = self.index_node(lookup.lookup, metric["oid"])
            typ = metric_type(self.type_of(node))
            if typ is None:
                raise GeneratorError(f"module {self.name}: lookups[{i}]: unknown index type {self.type_of(node)} "
                                     f"for {lookup.lookup} ({self.where(node)})")
            entry = {"labels": [sanitize_label_name(s) for s in lookup.source_indexes],
                     "labelname": sanitize_label_name(node.label), "oid": node.oid, "type": typ}
            metric["lookups"].append(entry)
            if entry["labelname"] in required:
                metric["indexes"].append({"labelname": entry["labelname"], "type": typ})
            if self.instances.get(metric["oid"]):
                for index in self.instances[metric["oid"]]:
                    self.need.add(node.oid + index + ".")
            else:
                self.need.add(node.oid)
            indices = static.get(node.oid)
            if indices is not None:
                self.need.discard(metric["oid"])
                for index in indices:
                    self.need.add(f"{metric['oid']}.{index}.")
            if lookup.drop_source_indexes:
                to_delete.extend(lookup.source_indexes)
        for label in to_delete:
            metric["lookups"].append({"labels": [], "labelname": sanitize_label_name(label)})

    def check_inet_address(self, metric: dict[str, Any]) -> None:
        if metric["type"] not in ("InetAddress", "InetAddressMissingSize"):
            return
        head, _, last = metric["oid"].rpartition(".")
        prev_oid = f"{head}.{int(last) - 1}"
        prev = self.names.get(prev_oid)
        if prev is None or prev.textual_convention != "InetAddressType":
            metric["type"] = "OctetString"
        elif self.instances.get(metric["oid"]):
            for index in self.instances[metric["oid"]]:
                self.need.add(prev_oid + index + ".")
        else:
            self.need.add(prev_oid)

    def module(self, metrics: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        walk: list[str] = []
        get: list[str] = []
        for oid in minimize_oids(list(self.need)):
            (get if oid.endswith(".") else walk).append(oid.rstrip("."))
        if walk:
            out["walk"] = walk
        if get:
            out["get"] = get
        out["metrics"] = [render_metric(m) for m in metrics]
        params = self.cfg.params
        if params.max_repetitions:
            out["max_repetitions"] = params.max_repetitions
        if params.retries is not None:
            out["retries"] = params.retries
        if params.timeout and params.timeout != "0s":
            out["timeout"] = params.timeout
        if params.use_unconnected_udp_socket:
            out["use_unconnected_udp_socket"] = True
        if params.allow_nonincreasing_oids:
            out["allow_nonincreasing_oids"] = True
        dynamic = [{k: v for k, v in (("oid", f.oid), ("targets", f.targets), ("values", f.values)) if v}
                   for f in self.cfg.filters.dynamic]
        if dynamic:
            out["filters"] = dynamic
        return out


def render_metric(metric: dict[str, Any]) -> dict[str, Any]:
    """snmp_exporter's field order; empty optional fields left out (its ``omitempty``)."""
    out = {k: metric[k] for k in ("name", "oid", "type", "help")}
    if metric["indexes"]:
        out["indexes"] = [
            {k: v for k, v in index.items() if k in ("labelname", "type") or v} for index in metric["indexes"]]
    if metric["lookups"]:
        out["lookups"] = [{k: v for k, v in lk.items() if k == "labels" or v} for lk in metric["lookups"]]
    if metric.get("_regex_extracts"):
        out["regex_extracts"] = {
            suffix: [{"value": e.value, "regex": f"^(?:{e.regex})$"} for e in extracts]
            for suffix, extracts in metric["_regex_extracts"].items()}
    if metric.get("_datetime_pattern"):
        out["datetime_pattern"] = metric["_datetime_pattern"]
    if metric["enum_values"]:
        out["enum_values"] = dict(sorted(metric["enum_values"].items()))
    if metric.get("_offset"):
        out["offset"] = metric["_offset"]
    if metric.get("_scale"):
        out["scale"] = metric["_scale"]
    return out


def generate(config: GeneratorConfig, root: Node, names: dict[str, Node],
             only: list[str] | None = None) -> dict[str, Any]:
    """The whole snmp.yml document: ``auths`` (defaults filled in) and ``modules`` (sorted by name)."""
    auths = {}
    for name, auth in config.auths.items():
        auths[name] = {k: v for k, v in (
            ("community", auth.community), ("security_level", auth.security_level), ("username", auth.username),
            ("password", auth.password), ("auth_protocol", auth.auth_protocol),
            ("priv_protocol", auth.priv_protocol), ("priv_password", auth.priv_password),
            ("context_name", auth.context_name), ("version", auth.version)) if v}
    modules = {}
    for name in sorted(config.modules):
        if only and name not in only:
            continue
        log.info("generating module %s", name)
        modules[name] = ModuleGenerator(name, config.modules[name], root, names).run()
        log.info("module %s: %d metrics", name, len(modules[name]["metrics"]))
    out: dict[str, Any] = {}
    if auths:
        out["auths"] = dict(sorted(auths.items()))
    out["modules"] = modules
    if config.version:
        out["version"] = config.version
    return out
