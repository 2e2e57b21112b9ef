"""Prometheus relabeling (``relabel_configs`` and ``metric_relabel_configs``), as Prometheus 2.42 does it.

Regexes are fully anchored (``^(?:regex)$``); ``replacement`` and ``target_label`` are Go templates
(``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``) expanded by :func:`expand`, which keeps Go's quirks:
``$1x`` names the group ``1x`` (usually absent, so empty), an unknown group expands to nothing.
Each step sees the labels the previous step produced; an empty value removes a label.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sotp.model import LABEL_NAME_RE
from worker.scrape.config import RelabelConfig

_TEMPLATE_RE = re.compile(r"\$(?:\$|\{(\w+)\}|(\w+))")


def expand(template: str, match: re.Match[str]) -> str:
    """Go's ``Regexp.ExpandString``: ``$1``/``${1}``/``$name``/``${name}``/``$$`` over ``match``."""
    if "$" not in template:
        return template

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        ref = m.group(1) or m.group(2)
        if ref.isdigit():
            idx = int(ref)
            if idx <= (match.re.groups or 0):
                return match.group(idx) or ""
            return ""
        try:
            return match.group(ref) or ""
        except IndexError:
            return ""

    return _TEMPLATE_RE.sub(sub, template)


@dataclass(frozen=True)
class Step:
    """A compiled relabel step."""

    cfg: RelabelConfig
    regex: re.Pattern[str]


def compile_steps(cfgs: Sequence[RelabelConfig]) -> tuple[Step, ...]:
    """Compile each step's anchored regex once (configs are validated already)."""
    return tuple(Step(c, compile_anchored(c.regex)) for c in cfgs)


def compile_anchored(regex: str) -> re.Pattern[str]:
    """RE2-like anchoring: ``\\Z`` (Python's ``$`` would also match before a final newline), ASCII
    classes (Go's ``\\w``/``\\d``/``\\s``), and ``.`` not matching a newline (Go's default)."""
    return re.compile(f"^(?:{regex})\\Z", re.ASCII)


def hashmod(value: str, modulus: int) -> int:
    """Prometheus's hashmod: the last 8 bytes of MD5(value), big-endian, modulo ``modulus``."""
    digest = hashlib.md5(value.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % modulus


def process(labels: dict[str, str], steps: Sequence[Step]) -> dict[str, str] | None:
    """Apply ``steps`` in order to a label dict (not modified); None when a keep/drop step drops it."""
    lset = dict(labels)
    for step in steps:
        cfg = step.cfg
        rx = step.regex
        act = cfg.action
        if act in ("labeldrop", "labelkeep", "labelmap"):
            if act == "labeldrop":
                lset = {k: v for k, v in lset.items() if not rx.match(k)}
            elif act == "labelkeep":
                lset = {k: v for k, v in lset.items() if rx.match(k)}
            else:
                out = dict(lset)
                for name, value in lset.items():
                    m = rx.match(name)
                    if m:
                        new = expand(cfg.replacement, m)
                        if value:
                            out[new] = value
                        else:
                            out.pop(new, None)
                lset = out
            continue
        val = cfg.separator.join(lset.get(n, "") for n in cfg.source_labels)
        if act == "drop":
            if rx.match(val):
                return None
        elif act == "keep":
            if not rx.match(val):
                return None
        elif act == "replace":
            m = rx.match(val)
            if m is None:
                continue  # no match, no replacement
            target = expand(cfg.target_label, m)
            if not LABEL_NAME_RE.match(target):
                lset.pop(cfg.target_label, None)
                continue
            res = expand(cfg.replacement, m)
            if res:
                lset[target] = res
            else:
                lset.pop(cfg.target_label, None)
        elif act == "lowercase":
            _set(lset, cfg.target_label, val.lower())
        elif act == "uppercase":
            _set(lset, cfg.target_label, val.upper())
        elif act == "hashmod":
            lset[cfg.target_label] = str(hashmod(val, cfg.modulus))
    return lset


def _set(lset: dict[str, str], name: str, value: str) -> None:
    if value:
        lset[name] = value
    else:
        lset.pop(name, None)
