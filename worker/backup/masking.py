"""Secrets removed from a device configuration before it is stored (what Oxidized's ``remove_secret`` and
RANCID's ``filter_pwds`` do), so neither the store, the API, nor a diff ever holds one.

Each platform has a list of :class:`SecretRule`: a line pattern whose named group ``s`` is the secret. The
secret is replaced by :data:`MASK` (quotes kept), the rest of the line stays, so a diff still shows *that* a
password, key or community changed, and on which line. Hashes count as secrets too (type 5/7/8/9, ``$9$``,
``$6$``): type 7 and Junos ``$9$`` are reversible, the others can be cracked offline. Masking also keeps
versions stable on devices that re-salt hashes on every display. Masking is idempotent.

Rules apply per line; a rule may be restricted to lines under a top-level block (``within``: the last
unindented line), e.g. a bare ``key 7 ...`` only inside ``tacacs server X``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

MASK: Final = "<removed>"
#: An optional encryption-type word before a Cisco-style secret: 0/5/7/8/9, XR's 10, EOS's sha512/md5.
_T = r"(?:(?:[0-9]|10|sha512|sha256|md5|encrypted)\s+)?"
#: A secret token: a double-quoted string or a run of non-blanks.
_V = r'"[^"]*"|\S+'


@dataclass(frozen=True)
class SecretRule:
    """A line pattern whose group ``s`` is a secret."""

    pattern: re.Pattern[str]
    #: Apply only to lines under a top-level line matching this (``None``: everywhere).
    within: re.Pattern[str] | None = None


def _rules(*specs: str | tuple[str, str]) -> tuple[SecretRule, ...]:
    out = []
    for spec in specs:
        if isinstance(spec, tuple):
            out.append(SecretRule(re.compile(spec[0]), re.compile(spec[1])))
        else:
            out.append(SecretRule(re.compile(spec)))
    return tuple(out)


#: Cisco IOS / IOS-XE / NX-OS / IOS-XR, Arista EOS and HP ProCurve share this syntax family.
CISCO_LIKE: Final = _rules(
    rf"^\s*enable (?:secret|password)(?: level \d+)? {_T}(?P<s>{_V})",
    rf"^\s*username \S+ (?:.*? )?(?:password|secret) {_T}(?P<s>{_V})",
    rf"^\s+(?:password|secret) {_T}(?P<s>{_V})",  # line vty / con, IOS-XR username blocks
    rf"^\s*snmp-server community (?P<s>{_V})",
    # The community (or v3 user) after the host address and its options.
    rf"^\s*snmp-server host \S+(?: (?:informs|traps|version (?:1|2c|3(?: (?:auth|noauth|priv))?)|vrf \S+))* "
    rf"(?P<s>{_V})",
    r"^\s*snmp-server user \S+ .*?\bauth \S+ (?P<s>\S+)",
    r"^\s*snmp-server user \S+ .*?\bpriv (?:(?:aes-128|aes \d+|3des|des56|des) )?(?P<s>0x[0-9a-fA-F]+|\S+)",
    rf"^\s*(?:tacacs|radius)-server (?:.* )?key {_T}(?P<s>{_V})",
    (rf"^\s+(?:server-)?key {_T}(?P<s>(?!\d+\s*$){_V})", r"^(?:tacacs|radius|aaa server)"),
    rf"\bkey-string {_T}(?P<s>{_V})",
    rf"\bmessage-digest-key \d+ md5 {_T}(?P<s>{_V})",
    rf"^\s*ntp authentication-key \d+ md5 (?P<s>{_V})",
    rf"\bauthentication-key (?!\d+ md5 ){_T}(?P<s>{_V})",
    rf"\bneighbor \S+ password {_T}(?P<s>{_V})",
    rf"^\s*crypto isakmp key {_T}(?P<s>\S+)",
    rf"\bpre-shared-key (?:(?:local|remote) )?{_T}(?P<s>{_V})",
    rf"\bwpa-psk (?:ascii|hex) {_T}(?P<s>{_V})",
    rf"\bppp (?:chap|pap) (?:password|sent-username \S+ password) {_T}(?P<s>{_V})",
    rf"\bstandby (?:\d+ )?authentication (?:md5 key-string |text )?{_T}(?P<s>{_V})",
    rf"^\s*password (?:manager|operator)(?: user-name \S+)?(?: sha1| plaintext)? (?P<s>{_V})",  # ProCurve
)

#: Junos, in ``display set`` and in curly-brace form (where Junos itself tags lines ``## SECRET-DATA``).
#: Specific shapes first: a rule skips a secret an earlier rule already masked.
_JV = r'(?:"[^"]*"|[^\s;"{]+)'
JUNOS: Final = _rules(
    rf"\bauthentication-key \d+ type \S+ value\s+(?P<s>{_JV})",  # NTP keys
    rf"\bmd5 \d+ key\s+(?P<s>{_JV})",  # OSPF/IS-IS interface keys
    r"\b(?:encrypted-password|authentication-key|secret|simple-password|ascii-text|hexadecimal|privacy-key|"
    rf"shared-secret|auth-password|privacy-password)\s+(?P<s>(?!\d+ type ){_JV})",
    rf"^set snmp (?:.* )?community\s+(?P<s>{_JV})",
    (rf"^\s*community\s+(?P<s>{_JV})", r"^snmp\b"),
    r'(?P<s>"\$(?:1|5|6|8|9)\$[^"]*")',  # a quoted hash on any line
    rf"\s(?P<s>{_JV});\s*## SECRET-DATA",  # whatever else Junos itself marks secret
)

#: Linux and custom commands: ``key = value`` pairs with a secret-like key, and shadow-file hashes.
GENERIC: Final = _rules(
    r"(?i)(?:password|passwd|secret|token|api[_-]?key|psk|passphrase|community)\s*[=:]\s*(?P<s>\S+)",
    r"^[^:\s]+:(?P<s>\$[0-9a-z]+\$[^:]+):",
)

PLATFORM_RULES: Final[dict[str, tuple[SecretRule, ...]]] = {
    "cisco_ios": CISCO_LIKE,
    "cisco_xe": CISCO_LIKE,
    "cisco_nxos": CISCO_LIKE,
    "cisco_xr": CISCO_LIKE,
    "arista_eos": CISCO_LIKE,
    "hp_procurve": CISCO_LIKE,
    "juniper_junos": JUNOS,
    "linux": GENERIC,
}
#: A device_type without its own rules (a custom ``command``): every rule, masking too much beats too little.
ALL_RULES: Final = CISCO_LIKE + JUNOS + GENERIC


def rules_for(device_type: str) -> tuple[SecretRule, ...]:
    """The platform's rules plus the generic ones (any config may carry ``password=...``)."""
    own = PLATFORM_RULES.get(device_type)
    return ALL_RULES if own is None else own + (GENERIC if own is not GENERIC else ())


def _replace(text: str) -> str:
    return f'"{MASK}"' if len(text) >= 2 and text[0] == text[-1] == '"' else MASK


def mask_line(line: str, top: str, rules: Sequence[SecretRule]) -> str:
    """``line`` with every secret replaced; ``top`` is the enclosing top-level line (for ``within``)."""
    for rule in rules:
        if rule.within is not None and not rule.within.search(top):
            continue
        pieces: list[str] = []
        pos = 0
        for m in rule.pattern.finditer(line):
            secret = m.group("s")
            if secret is None or secret == MASK:
                continue
            start, end = m.span("s")
            pieces.append(line[pos:start])
            pieces.append(_replace(secret))
            pos = end
        if pieces:
            line = "".join(pieces) + line[pos:]
    return line


def mask_secrets(text: str, device_type: str) -> str:
    """The configuration with every secret the platform's rules know replaced by :data:`MASK`."""
    rules = rules_for(device_type)
    out = []
    top = ""
    for line in text.split("\n"):
        if line[:1] not in (" ", "\t", ""):
            top = line
        out.append(mask_line(line, top, rules))
    return "\n".join(out)


def readable(content: str, masked_as: str | None, known: bool) -> str:
    """A stored version as readers may see it: masked again with the platform's rules (versions stored
    before masking existed), with every rule when the device is unknown to the store, and unchanged only
    for a device that opted out (``known`` and ``masked_as`` is ``None``)."""
    if not known:
        return mask_secrets(content, "")
    return content if masked_as is None else mask_secrets(content, masked_as)


__all__ = [
    "ALL_RULES",
    "MASK",
    "PLATFORM_RULES",
    "SecretRule",
    "mask_line",
    "mask_secrets",
    "readable",
    "rules_for",
]
