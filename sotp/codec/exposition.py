"""Writing the Prometheus text exposition format (0.0.4) exactly as Go exporters do.

prometheus_client appends ``_total`` to counters and emits ``_created`` series; snmp_exporter and
node_exporter do neither for the families SOTP mirrors, so exporters write their output with this
module instead. Numbers are formatted like Go's ``strconv.FormatFloat(v, 'g', -1, 64)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sotp.model import escape_label_value

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def format_value(v: float, exp_at: int = 6) -> str:
    """Shortest round-trip decimal with Go's ``'g'`` exponent rule: e-notation when the decimal exponent
    is < -4 or >= ``exp_at`` (6 for ``strconv.FormatFloat(v, 'g', -1, 64)``, as in exposition text)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    r = repr(float(v))
    mantissa, _, exp_s = r.partition("e")
    sign = ""
    if mantissa.startswith("-"):
        sign, mantissa = "-", mantissa[1:]
    int_part, _, frac = mantissa.partition(".")
    exp = int(exp_s) if exp_s else 0
    digits = (int_part + frac).lstrip("0")
    # Decimal exponent of the leading digit.
    if int_part.strip("0"):
        lead = len(int_part.lstrip("0")) - 1 + exp
    else:
        lead = -(len(frac) - len(frac.lstrip("0"))) - 1 + exp
    digits = digits.rstrip("0") or "0"
    if lead < -4 or lead >= exp_at:
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{m}e{'-' if lead < 0 else '+'}{abs(lead):02d}"
    if lead >= len(digits) - 1:
        return sign + digits + "0" * (lead - len(digits) + 1)
    if lead >= 0:
        return sign + digits[: lead + 1] + "." + digits[lead + 1 :]
    return sign + "0." + "0" * (-lead - 1) + digits


def escape_help(text: str) -> str:
    """Escape HELP text (backslash and newline only)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_labels(labels: Mapping[str, str]) -> str:
    """``{a="1",b="2"}`` in the given order, or ``""`` for no labels. Empty values are kept as written."""
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items()) + "}"


@dataclass(slots=True)
class MetricFamily:
    """A metric family to expose: ``samples`` are ``(name, labels, value)`` with full sample names."""

    name: str
    type: str  # counter, gauge, untyped, histogram, summary
    help: str = ""
    samples: list[tuple[str, Mapping[str, str], float]] = field(default_factory=list)

    def add(self, labels: Mapping[str, str], value: float, suffix: str = "") -> None:
        """Add a sample named ``name + suffix``."""
        self.samples.append((self.name + suffix, labels, value))


def format_families(families: Iterable[MetricFamily]) -> str:
    """Render families in order, with HELP and TYPE lines, as Go's expfmt does."""
    out: list[str] = []
    for fam in families:
        if not fam.samples:
            continue
        out.append(f"# HELP {fam.name} {escape_help(fam.help)}\n")
        out.append(f"# TYPE {fam.name} {fam.type}\n")
        for name, labels, value in fam.samples:
            out.append(f"{name}{format_labels(labels)} {format_value(value)}\n")
    return "".join(out)
