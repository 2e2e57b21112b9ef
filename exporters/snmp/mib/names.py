"""Names for OIDs and OIDs for names, from a loaded MIB tree (what ``snmpwalk -m ALL`` prints).

Used by ``sotp snmp walk``: ``IF-MIB::ifDescr.2`` for ``1.3.6.1.2.1.2.2.1.2.2``, and the reverse for
a name typed on the command line (``ifDescr``, ``IF-MIB::ifDescr``, ``ifDescr.2`` or an OID).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from exporters.snmp.mib.loader import MibProblem, load_mibs
from exporters.snmp.mib.tree import Node, name_index

#: Where MIB files usually are when no ``-m`` is given: ``$MIBDIRS`` (colon-separated, as net-snmp), else
#: Debian's directories (``libsnmp-base``, and ``snmp-mibs-downloader``'s IETF and IANA ones).
DEFAULT_MIB_DIRS = ("/usr/share/snmp/mibs", "/usr/share/snmp/mibs/iana", "/usr/share/snmp/mibs/ietf")


def default_mib_dirs() -> list[str]:
    env = os.environ.get("MIBDIRS")
    if env:
        return [d for d in env.split(":") if d and Path(d).is_dir()]
    return [d for d in DEFAULT_MIB_DIRS if Path(d).is_dir()]


class MibNames:
    """A loaded tree with lookups both ways."""

    def __init__(self, root: Node, problems: list[MibProblem] | None = None) -> None:
        self.root = root
        self.problems = problems or []
        self.by_name = name_index(root, with_modules=True)

    @classmethod
    def load(cls, dirs: Iterable[str | Path]) -> MibNames:
        mibs = load_mibs(dirs)
        return cls(mibs.root, mibs.problems)

    def node_for(self, oid: str) -> tuple[Node | None, str]:
        """The deepest named node above ``oid`` and the rest of the OID (the instance)."""
        parts = oid.split(".")
        node = self.root if parts[0] == "1" else None
        if node is None:
            return None, oid
        depth = 1
        while depth < len(parts):
            nxt = next((c for c in node.children if str(c.subid) == parts[depth] and c.label), None)
            if nxt is None:
                break
            node, depth = nxt, depth + 1
        return node, ".".join(parts[depth:])

    def name(self, oid: str) -> str:
        """``MODULE::label.instance``, or the OID when no MIB knows it."""
        node, rest = self.node_for(oid)
        if node is None or node is self.root:
            return oid
        text = f"{node.module}::{node.label}" if node.module else node.label
        return f"{text}.{rest}" if rest else text

    def resolve(self, text: str) -> str:
        """A name (``ifDescr``, ``IF-MIB::ifDescr``, ``ifDescr.2``) or an OID -> numeric OID."""
        text = text.strip().lstrip(".")
        if not text or text.replace(".", "").isdigit():
            return text
        head, _, rest = text.partition(".")
        if "::" in text:
            module, _, tail = text.partition("::")
            head, _, rest = tail.partition(".")
            head = f"{module}::{head}"
        node = self.by_name.get(head)
        if node is None:
            raise KeyError(f"unknown MIB object {head!r} (load the MIB that defines it with -m DIR)")
        return f"{node.oid}.{rest}" if rest else node.oid
