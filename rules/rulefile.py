"""Prometheus rule files: parsed and validated as Prometheus 2.42's ``rulefmt`` does, with its messages.

A rule file is YAML: ``groups: [{name, interval, limit, rules: [{record|alert, expr, for, keep_firing_for,
labels, annotations}]}]``. Unknown keys, wrong types and invalid rules are reported with their line and
column, in the words ``promtool check rules`` uses, so ``sotp rules check`` prints the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rules.durations import parse_go_duration
from rules.templating import check_alert_template

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass
class RuleSpec:
    """One rule as written: ``record`` or ``alert``, with the 1-based line/column of its name and expr."""

    record: str = ""
    alert: str = ""
    expr: str = ""
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    record_pos: tuple[int, int] = (0, 0)
    alert_pos: tuple[int, int] = (0, 0)
    expr_pos: tuple[int, int] = (0, 0)
    record_set: bool = False
    alert_set: bool = False

    @property
    def name(self) -> str:
        return self.alert or self.record


@dataclass
class GroupSpec:
    """One rule group as written (``interval_ms`` 0: the global evaluation interval)."""

    name: str
    interval_ms: int = 0
    limit: int = 0
    rules: list[RuleSpec] = field(default_factory=list)
    pos: tuple[int, int] = (0, 0)


class RuleFileError(Exception):
    """A rule file that cannot be loaded; ``errors`` are promtool's lines (without the file prefix)."""

    def __init__(self, path: str, errors: list[str]) -> None:
        super().__init__("\n".join(f"{path}: {e}" for e in errors))
        self.path = path
        self.errors = errors


class _Unmarshal:
    """yaml.v3's strict decoding into rulefmt's structs: collects ``line N: ...`` type errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, node: yaml.Node, msg: str) -> None:
        self.errors.append(f"line {node.start_mark.line + 1}: {msg}")

    def fields(
        self, node: yaml.Node, type_name: str, known: set[str], known_fields: bool = True
    ) -> Iterator[tuple[str, yaml.Node]]:
        """A struct's known fields in the file's order, for the caller to decode one by one (so errors come
        out in the file's order, as yaml.v3 reports them): the duplicate-key check of the whole mapping first;
        ``known_fields`` False: unknown keys are skipped silently (yaml.v3's default)."""
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"cannot unmarshal {_tag(node)} {_short(node)}into {type_name}")
            return
        if self.duplicate_keys(node):
            return
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else ""
            if key in known:
                yield key, v
            elif known_fields:
                self.fail(k, f"field {key} not found in type {type_name}")

    def string(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "tag:yaml.org,2002:null":
                return ""
            return str(node.value)
        self.fail(node, f"cannot unmarshal {_tag(node)} into string")
        return ""

    def integer(self, node: yaml.Node) -> int:
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "tag:yaml.org,2002:null":
                return 0
            try:
                return int(node.value.replace("_", ""), 0)
            except ValueError:
                pass
            try:
                f = float(node.value)
                if f.is_integer():
                    return int(f)
            except ValueError:
                pass
        self.fail(node, f"cannot unmarshal {_tag(node)} {_short(node)}into int")
        return 0

    def duration(self, node: yaml.Node) -> int:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return 0
        before = len(self.errors)
        text = self.string(node)
        if len(self.errors) > before:  # the unmarshaler's own decode failed: a type error, decoding goes on
            return 0
        try:
            return parse_go_duration(text)
        except ValueError as err:
            raise _Abort(str(err)) from None

    def string_map(self, node: yaml.Node) -> dict[str, str]:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"cannot unmarshal {_tag(node)} {_short(node)}into map[string]string")
            return {}
        if self.duplicate_keys(node):
            return {}
        return {self.string(k): self.string(v) for k, v in node.value}

    def duplicate_keys(self, node: yaml.MappingNode) -> bool:
        """yaml.v3 checks a mapping's keys before decoding it: every later key equal to an earlier one is an
        error (each pair once, so a key written three times gives three lines), and a mapping with any
        duplicate is not decoded at all (no unknown-field or type errors from inside it)."""
        keys = [k for k, _ in node.value]
        found = False
        for i, ki in enumerate(keys):
            for kj in keys[i + 1:]:
                if _key_identity(ki) == _key_identity(kj):
                    line = ki.start_mark.line + 1
                    self.fail(kj, f'mapping key "{_key_identity(kj)[1]}" already defined at line {line}')
                    found = True
        return found

    def sequence(self, node: yaml.Node, into: str) -> list[yaml.Node]:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, f"cannot unmarshal {_tag(node)} {_short(node)}into {into}")
            return []
        return list(node.value)


class _Abort(Exception):
    """A custom unmarshaler's error (a duration): yaml.v3 stops and returns it alone."""


def _key_identity(node: yaml.Node) -> tuple[str, str]:
    """What yaml.v3 compares to find duplicate keys: the node's kind and its scalar text ("" otherwise)."""
    return type(node).__name__, node.value if isinstance(node, yaml.ScalarNode) else ""


def _tag(node: yaml.Node) -> str:
    tag = node.tag
    if tag.startswith("tag:yaml.org,2002:"):
        return "!!" + tag.removeprefix("tag:yaml.org,2002:")
    return tag


def _short(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        v = node.value
        if len(v) > 10:
            v = v[:7] + "..."
        return f"`{v}` "
    return ""


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Loader(yaml.SafeLoader):
    """YAML 1.2 scalars as yaml.v3 resolves them: ``yes``/``no``/``on``/``off`` stay strings."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def compose(text: str) -> yaml.Node | None:
    """The YAML node tree of a document (``None`` for an empty one); raises ``yaml.YAMLError``."""
    return yaml.compose(text, Loader=_Loader)


def parse_rule_text(text: str) -> tuple[list[GroupSpec], list[str]]:
    """Decode and validate rule-file text: ``(groups, errors)`` as ``rulefmt.Parse`` returns them."""
    try:
        root = compose(text)
    except yaml.YAMLError as err:
        # rulefmt.Parse decodes the text twice (see _node_errors); both fail on a syntax error.
        return [], [_yaml_syntax_error(err)] * 2
    if root is None:
        return [], []
    u = _Unmarshal()
    groups: list[GroupSpec] = []
    errors: list[str] = []
    try:
        for _, n in u.fields(root, "rulefmt.RuleGroups", {"groups"}):
            groups += [_decode_group(u, g) for g in u.sequence(n, "[]rulefmt.RuleGroup")]
    except _Abort as err:  # yaml.v3 returns a custom unmarshaler's error alone
        errors.append(str(err))
    else:
        if u.errors:
            errors.append("yaml: unmarshal errors:\n  " + "\n  ".join(u.errors))
    errors += _node_errors(root)
    if errors:
        return [], errors
    return groups, validate_groups(groups)


def _node_errors(root: yaml.Node) -> list[str]:
    """rulefmt.Parse's second decode, into ``ruleGroups{Groups []yaml.Node}`` (non-strict: it keeps the nodes
    for positions): only the top level is checked, so a top-level duplicate key, a document that is not a
    mapping or ``groups`` that is not a sequence is reported a second time, with that type's name."""
    u = _Unmarshal()
    for _, n in u.fields(root, "rulefmt.ruleGroups", {"groups"}, known_fields=False):
        u.sequence(n, "[]yaml.Node")
    return ["yaml: unmarshal errors:\n  " + "\n  ".join(u.errors)] if u.errors else []


def _yaml_syntax_error(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    if mark is not None:
        return f"yaml: line {mark.line + 1}: {problem}"
    return f"yaml: {problem}"


def _decode_group(u: _Unmarshal, node: yaml.Node) -> GroupSpec:
    g = GroupSpec(name="", pos=_pos(node))
    for key, n in u.fields(node, "rulefmt.RuleGroup", {"name", "interval", "limit", "rules"}):
        if key == "name":
            g.name = u.string(n)
        elif key == "interval":
            g.interval_ms = u.duration(n)
        elif key == "limit":
            g.limit = u.integer(n)
        else:
            g.rules += [_decode_rule(u, r) for r in u.sequence(n, "[]rulefmt.RuleNode")]
    return g


def _decode_rule(u: _Unmarshal, node: yaml.Node) -> RuleSpec:
    r = RuleSpec()
    known = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
    for key, n in u.fields(node, "rulefmt.RuleNode", known):
        if key == "record":
            r.record, r.record_pos, r.record_set = u.string(n), _pos(n), True
        elif key == "alert":
            r.alert, r.alert_pos, r.alert_set = u.string(n), _pos(n), True
        elif key == "expr":
            r.expr, r.expr_pos = u.string(n), _pos(n)
        elif key == "for":
            r.for_ms = u.duration(n)
        elif key == "keep_firing_for":
            r.keep_firing_for_ms = u.duration(n)
        elif key == "labels":
            r.labels = u.string_map(n)
        else:
            r.annotations = u.string_map(n)
    return r


def parse_expr_error(expr: str) -> str | None:
    """The PromQL parse error of ``expr`` (as Prometheus words it, as far as the parser allows) or None."""
    from query.errors import BadData
    from query.parse import parse

    try:
        parse(expr)
    except BadData as err:
        return str(err)
    return None


def _valid_label_value(v: str) -> bool:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rule_errors(r: RuleSpec) -> list[tuple[str, tuple[int, int] | None, tuple[int, int] | None]]:
    """``RuleNode.Validate``: (message, node position, alternative node position)."""
    out: list[tuple[str, tuple[int, int] | None, tuple[int, int] | None]] = []
    if r.record and r.alert:
        out.append(("only one of 'record' and 'alert' must be set", r.record_pos, r.alert_pos))
    if not r.record and not r.alert:
        out.append(("one of 'record' or 'alert' must be set", r.record_pos, None))
    if not r.expr:
        out.append(("field 'expr' must be set in rule", r.expr_pos, None))
    else:
        err = parse_expr_error(r.expr)
        if err is not None:
            out.append((f"could not parse expression: {err}", r.expr_pos, None))
    if r.record:
        if r.annotations:
            out.append(("invalid field 'annotations' in recording rule", r.record_pos, None))
        if r.for_ms:
            out.append(("invalid field 'for' in recording rule", r.record_pos, None))
        if r.keep_firing_for_ms:
            out.append(("invalid field 'keep_firing_for' in recording rule", r.record_pos, None))
        if not METRIC_NAME_RE.match(r.record):
            out.append((f"invalid recording rule name: {r.record}", r.record_pos, None))
    for k, v in sorted(r.labels.items()):
        if not LABEL_NAME_RE.match(k) or k == "__name__":
            out.append((f"invalid label name: {k}", None, None))
        if not _valid_label_value(v):
            out.append((f"invalid label value: {v}", None, None))
    for k in sorted(r.annotations):
        if not LABEL_NAME_RE.match(k):
            out.append((f"invalid annotation name: {k}", None, None))
    if r.alert:
        for k, v in sorted(r.labels.items()):
            err = check_alert_template(r.alert, v)
            if err is not None:
                out.append((f'label "{k}": {err}', None, None))
        for k, v in sorted(r.annotations.items()):
            err = check_alert_template(r.alert, v)
            if err is not None:
                out.append((f'annotation "{k}": {err}', None, None))
    return out


def validate_groups(groups: list[GroupSpec]) -> list[str]:
    """``RuleGroups.Validate``: every error, in promtool's words."""
    errs: list[str] = []
    seen: set[str] = set()
    for g in groups:
        line, col = g.pos
        if not g.name:
            errs.append(f"{line}:{col}: Groupname must not be empty")
        if g.name in seen:
            errs.append(f'{line}:{col}: groupname: "{g.name}" is repeated in the same file')
        seen.add(g.name)
        for i, r in enumerate(g.rules):
            for msg, node, alt in _rule_errors(r):
                head = f'group "{g.name}", rule {i + 1}, "{r.name}": {msg}'
                if node is not None and alt is not None:
                    errs.append(f"{node[0]}:{node[1]}: {alt[0]}:{alt[1]}: {head}")
                elif node is not None:
                    errs.append(f"{node[0]}:{node[1]}: {head}")
                else:
                    errs.append(head)
    return errs


def load_rule_file(path: str | Path) -> list[GroupSpec]:
    """Read and validate one rule file; raises :class:`RuleFileError` with every problem."""
    p = str(path)
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise RuleFileError(p, [f"open {p}: {(err.strerror or str(err)).lower()}"]) from err
    groups, errors = parse_rule_text(text)
    if errors:
        raise RuleFileError(p, errors)
    return groups
