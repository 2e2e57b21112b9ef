"""Prometheus rule files: parsed and validated as Prometheus 2.42's ``rulefmt`` does, with its messages.

A rule file is YAML: ``groups: [{name, interval, limit, rules: [{record|alert, expr, for, keep_firing_for,
labels, annotations}]}]``. Unknown keys, wrong types and invalid rules are reported with their line and
column, in the words ``promtool check rules`` uses, so ``sotp rules check`` prints the same.
"""

from __future__ import annotations

import re
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

    def mapping(self, node: yaml.Node, type_name: str, known: set[str]) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"cannot unmarshal {_tag(node)} {_short(node)}into {type_name}")
            return {}
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else ""
            if key in out:
                self.fail(k, f'mapping key "{key}" already defined at line {out[key][0].start_mark.line + 1}')
                continue
            if key not in known:
                self.fail(k, f"field {key} not found in type {type_name}")
                continue
            out[key] = (k, v)
        return out

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
        text = self.string(node)
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
        out: dict[str, str] = {}
        seen: dict[str, yaml.Node] = {}
        for k, v in node.value:
            key = self.string(k)
            if key in seen:
                self.fail(k, f'mapping key "{key}" already defined at line {seen[key].start_mark.line + 1}')
                continue
            seen[key] = k
            out[key] = self.string(v)
        return out

    def sequence(self, node: yaml.Node, into: str) -> list[yaml.Node]:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, f"cannot unmarshal {_tag(node)} {_short(node)}into {into}")
            return []
        return list(node.value)


class _Abort(Exception):
    """A custom unmarshaler's error (a duration): yaml.v3 stops and returns it alone."""


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
        return [], [_yaml_syntax_error(err)]
    if root is None:
        return [], []
    u = _Unmarshal()
    groups: list[GroupSpec] = []
    try:
        top = u.mapping(root, "rulefmt.RuleGroups", {"groups"})
        if "groups" in top:
            for gnode in u.sequence(top["groups"][1], "[]rulefmt.RuleGroup"):
                groups.append(_decode_group(u, gnode))
    except _Abort as err:
        return [], [str(err)]
    if u.errors:
        return [], ["yaml: unmarshal errors:\n  " + "\n  ".join(u.errors)]
    return groups, validate_groups(groups)


def _yaml_syntax_error(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    if mark is not None:
        return f"yaml: line {mark.line + 1}: {problem}"
    return f"yaml: {problem}"


def _decode_group(u: _Unmarshal, node: yaml.Node) -> GroupSpec:
    fields = u.mapping(node, "rulefmt.RuleGroup", {"name", "interval", "limit", "rules"})
    g = GroupSpec(name="", pos=_pos(node))
    if "name" in fields:
        g.name = u.string(fields["name"][1])
    if "interval" in fields:
        g.interval_ms = u.duration(fields["interval"][1])
    if "limit" in fields:
        g.limit = u.integer(fields["limit"][1])
    if "rules" in fields:
        for rnode in u.sequence(fields["rules"][1], "[]rulefmt.RuleNode"):
            g.rules.append(_decode_rule(u, rnode))
    return g


def _decode_rule(u: _Unmarshal, node: yaml.Node) -> RuleSpec:
    fields = u.mapping(
        node, "rulefmt.RuleNode", {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
    )
    r = RuleSpec()
    if "record" in fields:
        n = fields["record"][1]
        r.record, r.record_pos, r.record_set = u.string(n), _pos(n), True
    if "alert" in fields:
        n = fields["alert"][1]
        r.alert, r.alert_pos, r.alert_set = u.string(n), _pos(n), True
    if "expr" in fields:
        n = fields["expr"][1]
        r.expr, r.expr_pos = u.string(n), _pos(n)
    if "for" in fields:
        r.for_ms = u.duration(fields["for"][1])
    if "keep_firing_for" in fields:
        r.keep_firing_for_ms = u.duration(fields["keep_firing_for"][1])
    if "labels" in fields:
        r.labels = u.string_map(fields["labels"][1])
    if "annotations" in fields:
        r.annotations = u.string_map(fields["annotations"][1])
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
