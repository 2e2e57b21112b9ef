"""Per-platform knowledge: the command that prints the configuration, and its volatile lines.

Volatile lines change on every fetch without the configuration changing (timestamps, byte counts, clock
drift): they are removed before hashing so they never create a version.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Platform:
    """How to back up one kind of device."""

    command: str
    volatile: tuple[re.Pattern[str], ...] = field(default_factory=tuple)  # whole lines to drop
    scrub: tuple[re.Pattern[str], ...] = field(default_factory=tuple)  # volatile parts of kept lines


def _re(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


_IOS_VOLATILE = _re(
    r"^! Last configuration change at ",
    r"^! NVRAM config last updated at ",
    r"^! No configuration change since last restart",
    r"^ntp clock-period ",
    r"^Building configuration\.\.\.",
    r"^Current configuration : \d+ bytes",
)

PLATFORMS: dict[str, Platform] = {
    "cisco_ios": Platform("show running-config", _IOS_VOLATILE),
    "cisco_xe": Platform("show running-config", _IOS_VOLATILE),
    "cisco_nxos": Platform("show running-config", _re(r"^!Time: ", r"^!Running configuration last done at: ")),
    "arista_eos": Platform("show running-config", _re(r"^! Command: ", r"^! Time: ", r"^! device: ")),
    "juniper_junos": Platform(
        "show configuration | display set",
        _re(r"^## Last commit: ", r"^## Last changed: ", r"^# ?Last changed: "),
    ),
    "hp_procurve": Platform(
        "show running-config", _re(r"^Running configuration:", r"^; .* Configuration Editor; Created on release")
    ),
    # A Linux box acting as router: its addresses and routes are its network configuration. Lifetimes of
    # dynamic addresses count down on every read.
    "linux": Platform(
        "ip -o addr show; ip route show", _re(r"^\s*$"), _re(r"\b(?:valid|preferred)_lft \S+")
    ),
}


def platform_for(device_type: str) -> Platform:
    """The platform entry, or a KeyError naming the supported types."""
    try:
        return PLATFORMS[device_type]
    except KeyError:
        raise KeyError(
            f"unsupported device_type {device_type!r}: use one of {', '.join(sorted(PLATFORMS))} "
            "or set 'command' for the device"
        ) from None


def normalize(text: str, platform: Platform) -> str:
    """The configuration without volatile lines and trailing blanks, newline-terminated."""
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.rstrip()
        if any(p.search(line) for p in platform.volatile):
            continue
        for p in platform.scrub:
            line = p.sub("", line)
        lines.append(line)
    return "\n".join(lines).strip("\n") + "\n"


def digest(text: str, platform: Platform) -> str:
    """sha256 of the normalized configuration."""
    return hashlib.sha256(normalize(text, platform).encode()).hexdigest()
