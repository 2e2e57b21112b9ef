"""Read MIB files with pysmi's parser and build net-snmp's tree from them.

Every file of every directory is read (net-snmp's ``MIBS=ALL``, which snmp_exporter's generator
sets); files that hold no ``DEFINITIONS ::= BEGIN`` are skipped. pysmi turns each module into a
syntax tree; resolution then follows net-snmp's ``parse.c``, which is what the generator sees:

* a TEXTUAL-CONVENTION (or a plain type assignment) records its base type, its own DISPLAY-HINT,
  enumerations and size ranges; one whose SYNTAX names another TC takes only that TC's base type;
* an OBJECT-TYPE whose SYNTAX names a TC takes the TC's type, hint, enumerations and ranges, and
  remembers the TC's name; its own enumerations replace the TC's;
* a TC name is looked up in the module it is imported from (any loaded module when that one is
  missing), else in the object's own module;
* the first definition of a (label, OID) pair wins; the same OID under another label is another node.

Problems are collected as :class:`MibProblem` (file, line, module, object, what) rather than raised,
so one broken vendor file does not hide the others; the generator fails on them unless told not to.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from exporters.snmp.mib.tree import Node

log = logging.getLogger("sotp.snmp.mib")

#: SMI keywords -> net-snmp's type names (``parse.h`` TYPE_* as the generator prints them).
BASE_TYPES = {
    "INTEGER": "INTEGER",
    "Integer32": "INTEGER32",
    "Unsigned32": "UNSIGNED32",
    "UInteger32": "UINTEGER",
    "Counter32": "COUNTER",
    "Counter": "COUNTER",
    "Gauge32": "GAUGE",
    "Gauge": "GAUGE",
    "TimeTicks": "TIMETICKS",
    "Counter64": "COUNTER64",
    "IpAddress": "IPADDR",
    "NetworkAddress": "NETADDR",
    "Opaque": "OPAQUE",
    "OCTET STRING": "OCTETSTR",
    "OBJECT IDENTIFIER": "OBJID",
    "BITS": "BITSTRING",
    "NsapAddress": "NSAPADDRESS",
    "NULL": "NULL",
}
ACCESS = {
    "read-only": "ACCESS_READONLY",
    "read-write": "ACCESS_READWRITE",
    "write-only": "ACCESS_WRITEONLY",
    "not-accessible": "ACCESS_NOACCESS",
    "accessible-for-notify": "ACCESS_NOTIFY",
    "read-create": "ACCESS_CREATE",
}
#: Declarations that make an OID node, with the type net-snmp gives them.
NODE_KINDS = {
    "valueDeclaration": "OTHER",
    "moduleIdentityClause": "MODID",
    "objectIdentityClause": "OBJIDENTITY",
    "notificationTypeClause": "NOTIFTYPE",
    "objectGroupClause": "OBJGROUP",
    "notificationGroupClause": "NOTIFGROUP",
    "moduleComplianceClause": "MODCOMP",
    "agentCapabilitiesClause": "AGENTCAP",
    "objectTypeClause": "",
}
#: net-snmp's roots.
ROOTS = {"ccitt": (0,), "iso": (1,), "joint-iso-ccitt": (2,)}
#: Imports net-snmp rewrites (``module_map`` in parse.c): SMIv1 names of modules that were renamed.
MODULE_ALIASES = {"RFC1065-SMI": "RFC1155-SMI", "RFC1066-MIB": "RFC1156-MIB", "RFC1156-MIB": "RFC1158-MIB",
                  "RFC1158-MIB": "RFC1213-MIB", "RFC-1213": "RFC1213-MIB", "RFC1155-SMI": "SNMPv2-SMI"}
_DEFINITIONS = re.compile(rb"DEFINITIONS\s*::=\s*BEGIN")
_DEFINITION_LINE = re.compile(r"^\s*([A-Za-z][\w-]*)\s+(?:OBJECT|MODULE|NOTIFICATION|TRAP|TEXTUAL|::=|[A-Z])")
_MODULE_NAME = re.compile(r"^\s*([A-Za-z][\w-]*)\s+DEFINITIONS\s*::=", re.MULTILINE)


@dataclass(frozen=True)
class MibProblem:
    """Something in a MIB file that net-snmp would report (the generator fails on these by default)."""

    file: str
    line: int
    module: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.module + ': ' if self.module else ''}{self.message}"


@dataclass
class TextualConvention:
    name: str
    module: str
    type: str
    hint: str = ""
    enums: dict[int, str] = field(default_factory=dict)
    ranges: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class MibModule:
    """One parsed module: its imports, textual conventions and OID-making declarations."""

    name: str
    file: str
    text: str
    imports: dict[str, str] = field(default_factory=dict)  # symbol -> module
    tcs: dict[str, Any] = field(default_factory=dict)  # name -> AST of the type declaration
    defs: list[tuple[str, str, Any]] = field(default_factory=list)  # (kind, label, AST)
    labels: set[str] = field(default_factory=set)
    _lines: dict[str, int] | None = None

    def line_of(self, label: str) -> int:
        """The line where ``label`` is defined (the first line starting with it and a keyword), or 0."""
        if self._lines is None:
            self._lines = {}
            for number, line in enumerate(self.text.splitlines(), 1):
                m = _DEFINITION_LINE.match(line)
                if m:
                    self._lines.setdefault(m.group(1), number)
        return self._lines.get(label, 0)


@dataclass
class MibSet:
    """Everything loaded: modules by name, the tree, and the problems found on the way."""

    modules: dict[str, MibModule]
    root: Node
    problems: list[MibProblem]


def _parser() -> Any:
    """pysmi's relaxed SMIv1/v2 parser, made as lenient as net-snmp where vendor MIBs need it: enumeration
    labels in capitals (``TRUE(1)`` in CISCO-FC-FE-MIB) and a comma after the last INDEX object
    (FServer-Std.MIB) are accepted. Built once per process (ply builds the LALR tables in memory, about
    a second)."""
    global _PARSER
    if _PARSER is None:
        from pysmi.parser.dialect import smi_v1_relaxed
        from pysmi.parser.smi import parserFactory

        base = parserFactory(**smi_v1_relaxed)
        lexer_base = base.defaultLexer

        class Lexer(lexer_base):  # type: ignore[misc,valid-type]
            forbidden_words: ClassVar[list[str]] = [w for w in lexer_base.forbidden_words if w not in ("TRUE", "FALSE")]

        def p_enumItem(self: Any, p: Any) -> None:
            """enumItem : LOWERCASE_IDENTIFIER '(' enumNumber ')'
            | UPPERCASE_IDENTIFIER '(' enumNumber ')'"""
            p[0] = (p[1], p[3])

        def p_MibIndex(self: Any, p: Any) -> None:  # ply finds grammar rules by their p_<Rule> names
            """MibIndex : INDEX '{' IndexTypes '}'
            | INDEX '{' IndexTypes ',' '}'
            | empty"""
            if p[1]:
                p[0] = (p[1], p[3])

        parser_class = type("NetSnmpLenientParser", (base,), {
            "defaultLexer": Lexer, "p_enumItem": p_enumItem, "p_MibIndex": p_MibIndex})
        _PARSER = parser_class()
    return _PARSER


_PARSER: Any = None


def mib_files(dirs: Iterable[str | Path]) -> list[Path]:
    """Files of the MIB directories in a stable order (directory order, then name); hidden ones skipped."""
    out: list[Path] = []
    for d in dirs:
        path = Path(d)
        if path.is_file():
            out.append(path)
            continue
        if not path.is_dir():
            raise FileNotFoundError(f"MIB directory {str(path)!r} does not exist (check -m/--mibs-dir)")
        for root, subdirs, files in os.walk(path):
            subdirs[:] = sorted(s for s in subdirs if not s.startswith("."))
            out.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
    return out


def parse_file(path: Path, problems: list[MibProblem]) -> list[MibModule]:
    """The modules of one file (empty when it is not a MIB or does not parse; the reason goes to problems)."""
    raw = path.read_bytes()
    if not _DEFINITIONS.search(raw):
        return []
    # MIB files are ASCII by the standard; vendors write Latin-1 in descriptions now and then.
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    from pysmi import error as smi_error

    try:
        ast = _parser().parse(text)
    except smi_error.PySmiError as err:
        first = _MODULE_NAME.search(text)
        line = int(getattr(err, "lineno", 0) or 0)
        msg = str(getattr(err, "msg", "") or err).split(";")[0].strip()
        problems.append(MibProblem(str(path), line, first.group(1) if first else "", f"cannot parse: {msg}"))
        return []
    modules = []
    for name, _oid, imports, declarations in ast:
        module = MibModule(name=name, file=str(path), text=text)
        for source, symbols in (imports or {}).items():
            for symbol in symbols:
                module.imports[symbol] = MODULE_ALIASES.get(source, source)
        for decl in declarations or []:
            if not decl:
                continue
            kind = decl[0]
            if kind == "typeDeclaration":
                module.tcs[decl[1]] = decl[2]
            elif kind in NODE_KINDS:
                module.defs.append((kind, decl[1], decl))
                module.labels.add(decl[1])
        modules.append(module)
    return modules


class _Resolver:
    """Turns parsed modules into nodes: OIDs from parent labels, types from SYNTAX and TCs."""

    def __init__(self, modules: dict[str, MibModule], problems: list[MibProblem]) -> None:
        self.modules = modules
        self.problems = problems
        self.tc_cache: dict[tuple[str, str], TextualConvention | None] = {}
        # label -> modules defining it, for parents named without an import (net-snmp links by label).
        self.definers: dict[str, list[str]] = {}
        for module in modules.values():
            for label in module.labels:
                self.definers.setdefault(label, []).append(module.name)
        self.oids: dict[tuple[str, str], tuple[int, ...] | None] = {}
        # Names given inside OID values, e.g. ``org(3)`` in ``{ iso org(3) dod(6) 1 }``.
        self.inline: dict[tuple[str, str], tuple[int, ...]] = {}

    def problem(self, module: MibModule, label: str, message: str) -> None:
        self.problems.append(MibProblem(module.file, module.line_of(label), module.name, message))

    # -- OIDs -------------------------------------------------------------------------------------------
    def oid_of(self, module: MibModule, label: str, seen: frozenset[tuple[str, str]] = frozenset()) -> \
            tuple[int, ...] | None:
        """The OID of ``label`` as ``module`` sees it (local, imported, or any module defining it)."""
        if (module.name, label) in self.inline:
            return self.inline[(module.name, label)]
        if label in module.labels:
            return self.local_oid(module, label, seen)
        source = module.imports.get(label)
        if source is not None and source in self.modules and label in self.modules[source].labels:
            return self.local_oid(self.modules[source], label, seen)
        if label in ROOTS:
            return ROOTS[label]
        for name in self.definers.get(label, []):
            oid = self.local_oid(self.modules[name], label, seen)
            if oid is not None:
                return oid
        for (_, inline_label), oid in self.inline.items():
            if inline_label == label:
                return oid
        return None

    def local_oid(self, module: MibModule, label: str, seen: frozenset[tuple[str, str]]) -> tuple[int, ...] | None:
        key = (module.name, label)
        if key in self.oids:
            return self.oids[key]
        if key in seen:
            return None
        self.oids[key] = None
        decl = next(d for k, lab, d in module.defs if lab == label)
        value = decl[-1]
        oid = self.oid_value(module, label, value, seen | {key})
        self.oids[key] = oid
        return oid

    def oid_value(self, module: MibModule, label: str, value: Any, seen: frozenset[tuple[str, str]]) -> \
            tuple[int, ...] | None:
        if not (isinstance(value, tuple) and value and value[0] == "objectIdentifier"):
            return None
        parts = value[1]
        oid: tuple[int, ...] = ()
        for i, part in enumerate(parts):
            if isinstance(part, int):
                oid += (part,)
            elif isinstance(part, tuple):  # name(number)
                name, number = part
                if i == 0 and name in ROOTS:
                    oid = ROOTS[name]
                else:
                    oid += (int(number),)
                    self.inline.setdefault((module.name, name), oid)
            elif i == 0:
                parent = self.oid_of(module, str(part), seen)
                if parent is None:
                    return None
                oid = parent
            else:
                return None
        return oid

    # -- types ------------------------------------------------------------------------------------------
    def tc(self, module: MibModule, name: str) -> TextualConvention | None:
        """net-snmp's ``get_tc``: the TC ``name`` from where ``module`` imports it, else its own."""
        source = module.imports.get(name)
        candidates: Sequence[MibModule]
        if source is not None:
            target = self.modules.get(source)
            # When the import's module is missing, net-snmp takes any TC of that name.
            candidates = [target] if target is not None else [m for m in self.modules.values() if name in m.tcs]
        else:
            candidates = [module]
        for candidate in candidates:
            found = self.tc_of(candidate, name)
            if found is not None:
                return found
        return None

    def tc_of(self, module: MibModule, name: str) -> TextualConvention | None:
        key = (module.name, name)
        if key in self.tc_cache:
            return self.tc_cache[key]
        self.tc_cache[key] = None  # cycles resolve to "unknown"
        rhs = module.tcs.get(name)
        if rhs is None or name in BASE_TYPES or name in ("Counter32", "Gauge32", "Integer32", "ObjectName",
                                                        "ObjectSyntax", "SimpleSyntax", "ApplicationSyntax"):
            return None
        if len(rhs) == 6:  # TEXTUAL-CONVENTION: display hint, status, description, reference, syntax
            display, syntax = rhs[1], rhs[5]
            hint = display[1] if display else ""
        else:
            syntax, hint = rhs[1], ""
        base = self.syntax(module, syntax, follow_tc_details=False)
        if base is None:
            return None
        typ, _tc, _hint, enums, ranges = base
        found = TextualConvention(name, module.name, typ, hint, enums, ranges)
        self.tc_cache[key] = found
        return found

    def syntax(self, module: MibModule, syntax: Any, follow_tc_details: bool = True) -> \
            tuple[str, str, str, dict[int, str], list[tuple[int, int]]] | None:
        """(type, TC name, hint, enums, ranges) of a SYNTAX; None for SEQUENCE/unknown types."""
        if not isinstance(syntax, tuple) or not syntax:
            return None
        kind = syntax[0]
        if kind in ("SimpleSyntax", "ApplicationSyntax"):
            word = syntax[1]
            sub = syntax[2] if len(syntax) > 2 else None
            if word in BASE_TYPES:
                return BASE_TYPES[word], "", "", _enums(sub), _ranges(sub)
            return self.named(module, word, sub, follow_tc_details)
        if kind == "row":
            return self.named(module, syntax[1], None, follow_tc_details)
        if kind == "BITS":
            return "BITSTRING", "", "", {int(bit): str(label) for label, bit in syntax[1]}, []
        return None  # SEQUENCE OF, SEQUENCE, CHOICE

    def named(self, module: MibModule, name: str, sub: Any, follow_tc_details: bool) -> \
            tuple[str, str, str, dict[int, str], list[tuple[int, int]]] | None:
        if name == "BITS":
            return "BITSTRING", "", "", _enums(sub), []
        tc = self.tc(module, name)
        if tc is None:
            return None
        if not follow_tc_details:  # a TC built on a TC keeps only the base type
            return tc.type, "", "", _enums(sub), _ranges(sub)
        enums = _enums(sub) if sub is not None and sub[0] == "enumSpec" else dict(tc.enums)
        return tc.type, tc.name, tc.hint, enums, tc.ranges

    # -- nodes ------------------------------------------------------------------------------------------
    def node(self, module: MibModule, kind: str, label: str, decl: Any, oid: tuple[int, ...]) -> Node:
        node = Node(oid=".".join(map(str, oid)), subid=oid[-1], label=label, module=module.name,
                    type=NODE_KINDS[kind], source=f"{module.file}:{module.line_of(label)}")
        if kind != "objectTypeClause":
            return node
        (_, _, syntax, units, access, _status, description, _ref, augments, index, _defval, _oid) = decl
        resolved = self.syntax(module, syntax)
        if resolved is None:
            if not (isinstance(syntax, tuple) and syntax[0] in ("conceptualTable", "row", "SEQUENCE")):
                self.problem(module, label, f"{label}: unknown type in SYNTAX {_syntax_text(syntax)}")
        else:
            node.type, node.textual_convention, node.hint, node.enum_values = resolved[:4]
            tc = self.tc(module, node.textual_convention) if node.textual_convention else None
            node.fixed_size = _fixed_size(tc.ranges) if tc else 0
        if isinstance(syntax, tuple) and syntax[0] == "row" and self.tc(module, syntax[1]) is None:
            node.type = "OTHER"  # an entry: SYNTAX names its SEQUENCE
        if units:
            node.units = units[1]
        if access:
            node.access = ACCESS.get(access[1], "unknown")
        if description:
            node.description = description[1]
        if augments:
            node.augments = str(augments)
        if index:
            for implied, name in index[1]:
                node.indexes.append(str(name))
                node.implied_index = node.implied_index or bool(implied)
        return node


def _enums(sub: Any) -> dict[int, str]:
    if isinstance(sub, tuple) and sub and sub[0] == "enumSpec":
        return {int(value): str(name) for name, value in sub[1]}
    return {}


def _ranges(sub: Any) -> list[tuple[int, int]]:
    if not (isinstance(sub, tuple) and sub and sub[0] in ("integerSubType", "octetStringSubType")):
        return []
    out = []
    for item in sub[1]:
        low = _number(item[0])
        out.append((low, _number(item[1]) if len(item) > 1 else low))
    return out


def _number(value: Any) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith(("'H", "'h")):
        return int(text[1:-2] or "0", 16)
    if text.endswith(("'B", "'b")):
        return int(text[1:-2] or "0", 2)
    try:
        return int(text)
    except ValueError:
        return 0


def _fixed_size(ranges: list[tuple[int, int]]) -> int:
    """A TC's size when exactly one is possible (``SIZE (6)``), else 0 (net-snmp's ``get_tc_fixed_size``)."""
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return max(ranges[0][0], 0)
    return 0


def _syntax_text(syntax: Any) -> str:
    if isinstance(syntax, tuple) and len(syntax) > 1:
        return str(syntax[1])
    return repr(syntax)


def load_mibs(dirs: Iterable[str | Path]) -> MibSet:
    """Parse every MIB file under ``dirs`` and build the tree rooted at ``iso`` (OID 1)."""
    problems: list[MibProblem] = []
    modules: dict[str, MibModule] = {}
    for path in mib_files(dirs):
        for module in parse_file(path, problems):
            if module.name in modules:
                log.debug("module %s in %s already loaded from %s", module.name, path, modules[module.name].file)
                continue
            modules[module.name] = module
    resolver = _Resolver(modules, problems)
    root = Node(oid="1", subid=1, label="iso")
    by_oid: dict[str, list[Node]] = {"1": [root]}
    pending: list[Node] = []
    for module in modules.values():
        for kind, label, decl in module.defs:
            oid = resolver.local_oid(module, label, frozenset())
            if oid is None:
                parent = _oid_parent(decl[-1])
                if parent is None or parent not in resolver.definers:  # report the cause, not every descendant
                    resolver.problem(module, label, f"{label}: unlinked OID {_oid_text(decl[-1])}: no loaded MIB "
                                                    f"defines {parent!r} (add the MIB that does with -m)")
                continue
            if not oid or oid[0] != 1:
                continue  # ccitt / joint-iso-ccitt: not walked by the generator either
            key = ".".join(map(str, oid))
            same = by_oid.setdefault(key, [])
            if any(n.label == label for n in same):
                continue  # the same object from another module: the first one stays
            node = resolver.node(module, kind, label, decl, oid)
            same.append(node)
            pending.append(node)
    # Intermediate names (``org(3)``) become nodes too, unless a real definition has the OID.
    for (module_name, label), oid in resolver.inline.items():
        key = ".".join(map(str, oid))
        if oid[0] == 1 and not any(n.label == label for n in by_oid.get(key, [])):
            node = Node(oid=key, subid=oid[-1], label=label, module=module_name)
            by_oid.setdefault(key, []).append(node)
            pending.append(node)
    _link(root, by_oid, pending)
    return MibSet(modules, root, problems)


def _oid_parent(value: Any) -> str | None:
    if isinstance(value, tuple) and len(value) > 1 and isinstance(value[1], list) and value[1]:
        first = value[1][0]
        return first if isinstance(first, str) else None
    return None


def _oid_text(value: Any) -> str:
    if isinstance(value, tuple) and len(value) > 1 and isinstance(value[1], list):
        return "{ " + " ".join(f"{p[0]}({p[1]})" if isinstance(p, tuple) else str(p) for p in value[1]) + " }"
    return "?"


def _link(root: Node, by_oid: dict[str, list[Node]], nodes: list[Node]) -> None:
    """Hang every node under its parent OID, creating unnamed parents where a MIB skips levels."""
    for node in nodes:
        child = node
        while True:
            parent_oid, _, _ = child.oid.rpartition(".")
            if not parent_oid:
                break
            parents = by_oid.get(parent_oid)
            if parents:
                if child not in parents[0].children:
                    parents[0].children.append(child)
                break
            anonymous = Node(oid=parent_oid, subid=int(parent_oid.rpartition(".")[2]), label="")
            by_oid[parent_oid] = [anonymous]
            anonymous.children.append(child)
            child = anonymous
    for group in by_oid.values():
        for node in group:
            node.children.sort(key=lambda n: n.subid)
