"""Go's number and value formatting, as rule templates and promtool print it.

Rule templates print values with Go's ``fmt`` (``{{ $value }}`` is ``fmt.Sprint``, ``printf`` is
``fmt.Sprintf``), promtool prints samples with ``strconv.FormatFloat(v, 'E', -1, 64)`` and the HTTP API
prints alert values with ``'e'``. Python's ``repr`` gives the same shortest round-trip digits as Go's
``strconv``, so only the layout differs; it is rebuilt here from those digits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any


def _shortest(a: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of ``a > 0`` and the decimal point position (Go's ``digs.dp``)."""
    _sign, digits, exp = Decimal(repr(a)).as_tuple()
    ds = "".join(map(str, digits)).lstrip("0") or "0"
    # the value is 0.ds * 10**dp
    dp = len("".join(map(str, digits))) + int(exp) - (len("".join(map(str, digits))) - len(ds))
    ds = ds.rstrip("0") or "0"
    return ds, dp


def _exp_form(neg: bool, ds: str, dp: int, prec: int, e: str) -> str:
    mant = ds[0] + ("." + ds[1 : prec + 1].ljust(prec, "0") if prec > 0 else "")
    x = dp - 1
    sign = "-" if x < 0 else "+"
    return f"{'-' if neg else ''}{mant}{e}{sign}{abs(x):02d}"


def _fixed_form(neg: bool, ds: str, dp: int, prec: int) -> str:
    if dp > 0:
        whole = ds[:dp].ljust(dp, "0")
        frac = ds[dp:]
    else:
        whole = "0"
        frac = "0" * (-dp) + ds
    frac = frac[:prec].ljust(prec, "0")
    return f"{'-' if neg else ''}{whole}{'.' + frac if prec > 0 else ''}"


def format_float(v: float, fmt: str = "g", prec: int = -1) -> str:
    """Go's ``strconv.FormatFloat(v, fmt, prec, 64)`` for ``fmt`` in ``e E f g G``."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    neg = math.copysign(1.0, v) < 0
    a = abs(v)
    if prec >= 0:
        # fixed precision: Python's printf rounds exactly as Go does (correctly rounded decimal)
        if fmt in "eE":
            s = f"{a:.{prec}{fmt}}"
        elif fmt == "f":
            s = f"{a:.{prec}f}"
        else:
            s = _go_g_fixed(a, prec, fmt)
        return ("-" if neg else "") + s
    if a == 0:
        ds, dp = "0", 1
    else:
        ds, dp = _shortest(a)
    nd = len(ds)
    if fmt in "eE":
        return _exp_form(neg, ds, dp, nd - 1, fmt)
    if fmt == "f":
        return _fixed_form(neg, ds, dp, max(nd - dp, 0))
    # strconv's shortest %g: exponent form when exp < -4 or exp >= 6 ("if precision was the shortest
    # possible, use precision 6 for this decision"); fmt's %v of a float64 is the same.
    exp = dp - 1
    if exp < -4 or exp >= 6:
        return _exp_form(neg, ds, dp, nd - 1, "E" if fmt == "G" else "e")
    return _fixed_form(neg, ds, dp, max(nd - dp, 0))


def _go_g_fixed(a: float, prec: int, fmt: str) -> str:
    """``%.Ng``: the same as C's except that the exponent keeps at least two digits (C does too)."""
    if prec == 0:
        prec = 1
    return f"{a:.{prec}{'g' if fmt == 'g' else 'G'}}"


def sprint_float(v: float) -> str:
    """``fmt.Sprint(v)`` of a float64 (``%v``): shortest digits, exponent when exp < -4 or >= 21."""
    return format_float(v, "v")


class GoTime:
    """A ``time.Time`` (UTC) as templates see it: ``{{ toTime 0 }}`` prints Go's default layout."""

    __slots__ = ("dt", "ns")

    def __init__(self, ns: int) -> None:
        from datetime import UTC, timedelta

        self.ns = ns
        self.dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)

    def __str__(self) -> str:
        frac = self.ns % 1_000_000_000
        base = self.dt.strftime("%Y-%m-%d %H:%M:%S")
        tail = f".{frac:09d}".rstrip("0") if frac else ""
        return f"{base}{tail} +0000 UTC"

    def unix(self) -> int:
        return self.ns // 1_000_000_000


def type_name(x: Any) -> str:
    """Go's ``%T`` of a template value."""
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int):
        return "int"
    if isinstance(x, float):
        return "float64"
    if isinstance(x, str):
        return "string"
    if x is None:
        return "<nil>"
    if isinstance(x, Mapping):
        return "map[string]string" if all(isinstance(v, str) for v in x.values()) else "map[string]interface {}"
    if isinstance(x, GoTime):
        return "*time.Time"
    name = getattr(x, "go_type", None)
    if name:
        return str(name)
    if isinstance(x, Sequence):
        return "template.queryResult"
    return type(x).__name__


def sprint_value(x: Any, top: bool = True) -> str:
    """``fmt.Sprint`` of one template value (``%v``)."""
    if x is None:
        return "<nil>"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return sprint_float(x)
    if isinstance(x, str):
        return x
    if isinstance(x, GoTime):
        return str(x)
    if isinstance(x, Mapping):
        inner = " ".join(f"{k}:{sprint_value(x[k], False)}" for k in sorted(x))
        return f"map[{inner}]"
    gv = getattr(x, "go_value", None)
    if callable(gv):
        return str(gv(top))
    if isinstance(x, Sequence):
        return "[" + " ".join(sprint_value(e, False) for e in x) + "]"
    return str(x)


def sprint(args: Sequence[Any]) -> str:
    """``fmt.Sprint``: spaces between operands when neither side is a string."""
    out = []
    prev_string = True
    for i, a in enumerate(args):
        is_string = isinstance(a, str)
        if i > 0 and not is_string and not prev_string:
            out.append(" ")
        out.append(sprint_value(a))
        prev_string = is_string
    return "".join(out)


def sprintln(args: Sequence[Any]) -> str:
    """``fmt.Sprintln``: always a space between operands, and a newline."""
    return " ".join(sprint_value(a) for a in args) + "\n"


def go_quote(s: str) -> str:
    """``strconv.Quote``: Go string literal syntax with ASCII-safe escapes for control characters."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_VERB = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d+)?)?([a-zA-Z%])")


def _pad(s: str, flags: str, width: int | None, numeric: bool = False) -> str:
    if width is None or len(s) >= width:
        return s
    if "-" in flags:
        return s.ljust(width)
    if "0" in flags and numeric:
        sign = s[0] if s and s[0] in "+- " else ""
        body = s[len(sign) :]
        return sign + body.rjust(width - len(sign), "0")
    return s.rjust(width)


def _bad(verb: str, x: Any) -> str:
    if x is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({type_name(x)}={sprint_value(x)})"


def _fmt_float_verb(x: float, verb: str, flags: str, prec: int | None) -> str:
    if verb == "v":
        s = sprint_float(x) if prec is None else format_float(x, "g", prec)
    elif verb in "eE":
        s = format_float(x, verb, 6 if prec is None else prec)
    elif verb in "fF":
        s = format_float(x, "f", 6 if prec is None else prec)
    else:  # g G
        s = format_float(x, verb, -1 if prec is None else prec)
    if "+" in flags and not s.startswith(("-", "+")):
        s = "+" + s
    elif " " in flags and not s.startswith(("-", "+")):
        s = " " + s
    return s


def _fmt_one(verb: str, flags: str, width: int | None, prec: int | None, x: Any) -> str:
    if isinstance(x, bool):
        if verb in "vt":
            return _pad("true" if x else "false", flags, width)
        return _bad(verb, x)
    if isinstance(x, int):
        if verb in "vd":
            s = str(x)
        elif verb == "x":
            s = f"{x:x}" if x >= 0 else f"-{-x:x}"
        elif verb == "X":
            s = f"{x:X}" if x >= 0 else f"-{-x:X}"
        elif verb == "o":
            s = f"{x:o}"
        elif verb == "b":
            s = f"{x:b}"
        elif verb == "c":
            return _pad(chr(x), flags, width)
        elif verb == "q":
            return _pad("'" + chr(x) + "'", flags, width)
        else:
            return _bad(verb, x)
        if "+" in flags and x >= 0:
            s = "+" + s
        return _pad(s, flags, width, True)
    if isinstance(x, float):
        if verb in "veEfFgG":
            return _pad(_fmt_float_verb(x, verb, flags, prec), flags, width, True)
        return _bad(verb, x)
    if isinstance(x, str):
        if verb in "vs":
            s = x if prec is None else x[:prec]
            return _pad(s, flags, width)
        if verb == "q":
            return _pad(go_quote(x), flags, width)
        if verb in "xX":
            h = x.encode().hex()
            return _pad(h.upper() if verb == "X" else h, flags, width)
        return _bad(verb, x)
    if verb in "vs" or (verb == "d" and x is None):
        if x is None and verb != "v":
            return _bad(verb, x)
        return _pad(sprint_value(x), flags, width)
    return _bad(verb, x)


def sprintf(fmt: str, args: Sequence[Any]) -> str:
    """``fmt.Sprintf`` for the verbs rule templates use (``%s %v %d %f %e %g %q %x %t %%`` with flags,
    width and precision); mismatches print Go's ``%!verb(type=value)`` forms."""
    out: list[str] = []
    argi = 0
    pos = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width_s, prec_s, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        width: int | None = None
        prec: int | None = None
        if width_s == "*":
            if argi < len(args) and isinstance(args[argi], int):
                width = args[argi]
            argi += 1
        elif width_s:
            width = int(width_s)
        if m.group(0).find(".") >= 0:
            if prec_s == "*":
                if argi < len(args) and isinstance(args[argi], int):
                    prec = args[argi]
                argi += 1
            else:
                prec = int(prec_s) if prec_s else 0
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        out.append(_fmt_one(verb, flags, width, prec, args[argi]))
        argi += 1
    out.append(fmt[pos:])
    if argi < len(args):
        extra = ", ".join(f"{type_name(a)}={sprint_value(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)
