"""The MIB tree as net-snmp exposes it, and the generator's preparation of it.

A :class:`Node` carries what snmp_exporter's generator reads from net-snmp for each OID: the label,
the module, net-snmp's type name (``INTEGER``, ``OCTETSTR``, ``COUNTER64``...), the access, the
textual convention the SYNTAX names directly, its display hint and fixed size, enumerations (or
named bits), table indexes and AUGMENTS. :func:`prepare_tree` then applies the generator's rules:
first sentence of the description, indexes copied down from entries (and across AUGMENTS), and
types refined from hints and textual conventions (``DisplayString``, ``PhysAddress48``,
``DateAndTime``, ``InetAddress``...).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

#: Go's ``unicode.IsSpace`` (what ``strings.Fields`` splits on); Python's ``str.split`` also splits
#: on the ASCII separators 0x1c-0x1f, which Go keeps.
_GO_SPACE = re.compile("[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")
_DISPLAY_STRING_HINT = re.compile(r"^\d+[at]$")


@dataclass
class Node:
    """One OID of the tree. ``oid`` is dotted decimal without a leading dot."""

    oid: str
    subid: int
    label: str
    module: str = ""
    type: str = "OTHER"
    access: str = "unknown"
    augments: str = ""
    description: str = ""
    hint: str = ""
    textual_convention: str = ""
    fixed_size: int = 0
    units: str = ""
    enum_values: dict[int, str] = field(default_factory=dict)
    indexes: list[str] = field(default_factory=list)
    implied_index: bool = False
    children: list[Node] = field(default_factory=list)
    #: Where the definition is, for error messages: ``file:line``.
    source: str = ""

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, depth first, children in sub-identifier order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def copy(self) -> Node:
        """A deep copy of the subtree (the generator changes types per module)."""
        return copy.deepcopy(self)


def walk_node(root: Node, fn: Callable[[Node], None]) -> None:
    for node in root.walk():
        fn(node)


def name_index(root: Node, with_modules: bool = False) -> dict[str, Node]:
    """OID and label -> node; a later node in walk order wins, as in the generator's map.

    ``with_modules`` adds ``MODULE::label`` keys (the generator adds them per module)."""
    index: dict[str, Node] = {}
    for node in root.walk():
        index[node.oid] = node
        index[node.label] = node
        if with_modules and node.module:
            index[f"{node.module}::{node.label}"] = node
    return index


def first_sentence(description: str) -> str:
    """Whitespace collapsed (Go's ``strings.Fields``), cut at the first ``". "``."""
    text = " ".join(part for part in _GO_SPACE.split(description) if part)
    return text.split(". ", 1)[0]


def prepare_tree(root: Node) -> dict[str, Node]:
    """The generator's pass over a freshly loaded tree; returns the name index (OIDs and labels)."""
    by_name = name_index(root)
    nodes = list(root.walk())
    for node in nodes:
        node.description = first_sentence(node.description)
    # An SMIv1 ``INDEX { INTEGER }`` names a type, not an object: the entry itself stands in.
    for node in nodes:
        node.indexes = [node.label if i == "INTEGER" else i for i in node.indexes]
    for node in nodes:
        if not node.augments:
            continue
        augmented = by_name.get(node.augments)
        if augmented is None:
            continue  # the generator only warns; the columns stay without indexes
        for child in node.children:
            child.indexes = augmented.indexes
            child.implied_index = augmented.implied_index
        node.indexes = augmented.indexes
        node.implied_index = augmented.implied_index
    for node in nodes:
        if node.indexes:
            for child in node.children:
                child.indexes = node.indexes
                child.implied_index = node.implied_index
    for node in nodes:
        refine_type(node)
    return by_name


def refine_type(node: Node) -> None:
    """Types from display hints and textual conventions (RFC 2579, RFC 4001, LLDP-MIB...)."""
    tc = node.textual_convention
    if node.hint == "1x:":
        node.type = "PhysAddress48"
    if _DISPLAY_STRING_HINT.match(node.hint):
        node.type = "DisplayString"
    # MIBs importing from RFC1213-MIB get a DisplayString without the hint.
    if tc == "DisplayString":
        node.type = "DisplayString"
    if tc == "PhysAddress":
        node.type = "PhysAddress48"
    if tc in ("Float", "Double", "DateAndTime", "ParseDateAndTime", "NTPTimeStamp", "LldpPortId",
              "InetAddressIPv4", "InetAddressIPv6", "InetAddress"):
        node.type = tc
