"""Reading /sys and /proc values the way node_exporter's procfs library does (``internal/util``).

* :func:`read_attr`: one ``read(2)`` of at most 128 bytes, blanks trimmed (``SysReadFile``: some hwmon
  drivers answer EAGAIN forever to a read loop).
* :func:`read_uint`/:func:`read_int`: a whole file holding one decimal number.
* :func:`go_int`: ``strconv.ParseInt(s, 0, 64)`` (sysfs values such as ``0x1003``).
* :func:`valid_utf8`: Go's ``strings.ToValidUTF8(s, "\ufffd")``, for firmware strings (DMI).
"""

from __future__ import annotations

import os


def read_attr(path: str) -> str:
    """Raises OSError as the read does."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, 128)
    finally:
        os.close(fd)
    return valid_utf8(data.strip(b" \t\n\r\v\f"))


def read_uint(path: str) -> int:
    """Raises OSError, or ValueError for anything but a non-negative decimal number."""
    with open(path, "rb") as fh:
        text = fh.read().decode("latin-1").strip()
    if not text.isdigit():
        raise ValueError(f"{path}: expected an unsigned integer, got {text[:40]!r}")
    return int(text)


def read_int(path: str) -> int:
    with open(path, "rb") as fh:
        text = fh.read().decode("latin-1").strip()
    body = text[1:] if text[:1] in "+-" else text
    if not body.isdigit():
        raise ValueError(f"{path}: expected an integer, got {text[:40]!r}")
    return int(text)


def go_int(text: str) -> int:
    """An integer as Go's ``strconv.ParseInt(s, 0, 64)`` reads it: an optional sign, then ``0x``/``0o``/``0b``
    prefixes, and a leading ``0`` meaning octal. Raises ValueError."""
    body = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if len(body) > 1 and body[0] == "0" and body[1].isdigit():
        return sign * int(body, 8)
    return sign * int(body, 0)


def valid_utf8(data: bytes) -> str:
    """Decode UTF-8, each run of invalid bytes replaced by one U+FFFD (Go's ``strings.ToValidUTF8``)."""
    out = data.decode("utf-8", errors="surrogateescape")
    if not any("\udc80" <= c <= "\udcff" for c in out):
        return out
    chars: list[str] = []
    for c in out:
        if "\udc80" <= c <= "\udcff":
            if not chars or chars[-1] != "\ufffd":
                chars.append("\ufffd")
        else:
            chars.append(c)
    return "".join(chars)


def go_float(text: str) -> float:
    """A float as Go's ``strconv.ParseFloat(s, 64)`` reads it: no surrounding blanks, no ``_``. Raises
    ValueError."""
    if not text or text != text.strip() or "_" in text:
        raise ValueError(f"invalid float {text!r}")
    if text.lower().lstrip("+-").startswith("0x"):
        return float.fromhex(text)
    return float(text)


def go_uint(text: str) -> int:
    """``strconv.ParseUint(s, 0, 64)``: no sign, base prefixes as :func:`go_int`. Raises ValueError."""
    if text.startswith(("+", "-")):
        raise ValueError(f"invalid unsigned integer {text!r}")
    value = go_int(text)
    if value > 0xFFFFFFFFFFFFFFFF:
        raise ValueError(f"{text!r} is out of the uint64 range")
    return value
