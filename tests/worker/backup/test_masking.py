"""Secret masking per platform (issue 17, finding 3): each row is a config line as the platform prints it,
written by hand from the vendors' documented syntax, and the line expected after masking."""

from __future__ import annotations

import pytest

from worker.backup.masking import MASK, mask_secrets

M = MASK


def f(device_type: str, line: str, want: str) -> tuple[str, str, str]:
    return device_type, line, want


CASES = [
    # Cisco IOS / IOS-XE: the three secrets the security review read through the API.
    f("cisco_ios", "enable secret 5 $1$abcd$0123456789abcdefghij", f"enable secret 5 {M}"),
    f("cisco_ios", "snmp-server community S3cr3tRW RW", f"snmp-server community {M} RW"),
    f("cisco_ios", "username admin password 7 0822455D0A16", f"username admin password 7 {M}"),
    f("cisco_ios", "username admin privilege 15 secret 9 $9$nhEmQVczB7dqsO$X.HsgL6x1il0RxkOSSvyQYwucySCt7qFm4v7pqCxkKM",
      f"username admin privilege 15 secret 9 {M}"),
    f("cisco_ios", "enable secret plaintextpw", f"enable secret {M}"),
    f("cisco_ios", "enable password 7 01100F175804", f"enable password 7 {M}"),
    f("cisco_ios", " password 7 094F471A1A0A", f" password 7 {M}"),
    f("cisco_ios", "snmp-server host 10.0.0.9 version 2c TrapComm", f"snmp-server host 10.0.0.9 version 2c {M}"),
    f("cisco_ios", "snmp-server host 10.0.0.9 informs version 2c TrapComm udp-port 1162",
      f"snmp-server host 10.0.0.9 informs version 2c {M} udp-port 1162"),
    f("cisco_ios", "tacacs-server host 10.0.0.5 key 7 045802150C2E", f"tacacs-server host 10.0.0.5 key 7 {M}"),
    f("cisco_ios", "radius-server key 7 111918160405041E00", f"radius-server key 7 {M}"),
    f("cisco_xe", " ip ospf message-digest-key 1 md5 7 0822455D0A16", f" ip ospf message-digest-key 1 md5 7 {M}"),
    f("cisco_xe", " ip ospf authentication-key 7 0822455D0A16", f" ip ospf authentication-key 7 {M}"),
    f("cisco_xe", "  key-string 7 0822455D0A16", f"  key-string 7 {M}"),
    f("cisco_xe", " neighbor 192.0.2.1 password 7 0822455D0A16", f" neighbor 192.0.2.1 password 7 {M}"),
    f("cisco_xe", "crypto isakmp key VPNsecret address 198.51.100.7", f"crypto isakmp key {M} address 198.51.100.7"),
    f("cisco_xe", "ntp authentication-key 1 md5 0822455D0A16 7", f"ntp authentication-key 1 md5 {M} 7"),
    f("cisco_xe", " standby 1 authentication md5 key-string 7 0822455D0A16",
      f" standby 1 authentication md5 key-string 7 {M}"),
    # NX-OS
    f("cisco_nxos", "username admin password 5 $5$KJHGF$abcdefghijk  role network-admin",
      f"username admin password 5 {M}  role network-admin"),
    f("cisco_nxos", "snmp-server user admin network-admin auth md5 0x1234abcd priv 0x5678ef01 localizedkey",
      f"snmp-server user admin network-admin auth md5 {M} priv {M} localizedkey"),
    f("cisco_nxos", 'radius-server host 10.1.1.1 key 7 "fewhg" authentication accounting',
      f'radius-server host 10.1.1.1 key 7 "{M}" authentication accounting'),
    f("cisco_nxos", 'tacacs-server key 7 "abcdef"', f'tacacs-server key 7 "{M}"'),
    # IOS-XR: secrets on indented lines of the username block.
    f("cisco_xr", " secret 10 $6$Kz5g2/6hEHTx8/2.$D/SMk1TvyCsuKzLtBrN7s", f" secret 10 {M}"),
    # Arista EOS: hash algorithm words instead of type numbers.
    f("arista_eos", "username admin privilege 15 role network-admin secret sha512 $6$abc$def",
      f"username admin privilege 15 role network-admin secret sha512 {M}"),
    f("arista_eos", "enable password sha512 $6$abc$def", f"enable password sha512 {M}"),
    # HP ProCurve
    f("hp_procurve", 'password manager user-name "admin" sha1 "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8"',
      f'password manager user-name "admin" sha1 "{M}"'),
    f("hp_procurve", 'snmp-server community "public" unrestricted', f'snmp-server community "{M}" unrestricted'),
    # Junos, display set (what SOTP fetches) and curly form.
    f("juniper_junos", 'set system root-authentication encrypted-password "$6$abc$xyz"',
      f'set system root-authentication encrypted-password "{M}"'),
    f("juniper_junos", 'set system login user bob authentication encrypted-password "$6$q$w"',
      f'set system login user bob authentication encrypted-password "{M}"'),
    f("juniper_junos", 'set system radius-server 10.0.0.1 secret "$9$dVbYoJGDk.5z"',
      f'set system radius-server 10.0.0.1 secret "{M}"'),
    f("juniper_junos", 'set protocols bgp group ext authentication-key "$9$H.fz9Ap0BEc"',
      f'set protocols bgp group ext authentication-key "{M}"'),
    f("juniper_junos", 'set protocols ospf area 0 interface ge-0/0/0.0 authentication md5 1 key "$9$abc"',
      f'set protocols ospf area 0 interface ge-0/0/0.0 authentication md5 1 key "{M}"'),
    f("juniper_junos", 'set system ntp authentication-key 1 type md5 value "$9$abc"',
      f'set system ntp authentication-key 1 type md5 value "{M}"'),
    f("juniper_junos", 'set security ike policy p1 pre-shared-key ascii-text "$9$abc"',
      f'set security ike policy p1 pre-shared-key ascii-text "{M}"'),
    f("juniper_junos", "set snmp community Publ1cRO authorization read-only",
      f"set snmp community {M} authorization read-only"),
    f("juniper_junos", 'set snmp v3 usm local-engine user u1 authentication-sha authentication-key "$9$x"',
      f'set snmp v3 usm local-engine user u1 authentication-sha authentication-key "{M}"'),
    f("juniper_junos", '            encrypted-password "$6$abc$xyz"; ## SECRET-DATA',
      f'            encrypted-password "{M}"; ## SECRET-DATA'),
    f("juniper_junos", "            foo-bar-secret-thing 5ecr3t; ## SECRET-DATA",
      f"            foo-bar-secret-thing {M}; ## SECRET-DATA"),
    # Linux / custom commands
    f("linux", "wpa_passphrase=hunter22", f"wpa_passphrase={M}"),
    f("linux", "DB_PASSWORD: hunter22", f"DB_PASSWORD: {M}"),
    f("linux", "root:$6$salt$hashhashhash:19000:0:99999:7:::", f"root:{M}:19000:0:99999:7:::"),
]

KEPT = [
    f("cisco_ios", "service password-encryption", "service password-encryption"),
    f("cisco_ios", "interface GigabitEthernet0/1", "interface GigabitEthernet0/1"),
    f("cisco_ios", " description uplink to core", " description uplink to core"),
    f("cisco_ios", "snmp-server location rack 4", "snmp-server location rack 4"),
    f("juniper_junos", "set policy-options community blue members 65000:100",
      "set policy-options community blue members 65000:100"),
    f("juniper_junos", 'set system login user bob authentication ssh-ed25519 "ssh-ed25519 AAAAC3Nz bob@x"',
      'set system login user bob authentication ssh-ed25519 "ssh-ed25519 AAAAC3Nz bob@x"'),
    f("linux", "2: eth0    inet 192.0.2.10/24 brd 192.0.2.255 scope global eth0",
      "2: eth0    inet 192.0.2.10/24 brd 192.0.2.255 scope global eth0"),
]


@pytest.mark.parametrize(("device_type", "line", "want"), CASES + KEPT)
def test_issue17_3_secrets_masked_per_platform(device_type: str, line: str, want: str) -> None:
    assert mask_secrets(line, device_type) == want
    assert mask_secrets(want, device_type) == want  # idempotent: masking stored text again changes nothing


def test_block_scoped_keys_only_inside_tacacs_and_radius_blocks() -> None:
    text = "tacacs server ISE\n address ipv4 10.0.0.5\n key 7 045802150C2E\nkey chain OSPF\n key 1\n  key-string 7 X1\n"
    assert mask_secrets(text, "cisco_ios") == (
        f"tacacs server ISE\n address ipv4 10.0.0.5\n key 7 {M}\nkey chain OSPF\n key 1\n  key-string 7 {M}\n"
    )


def test_junos_curly_snmp_community_only_under_snmp() -> None:
    text = "snmp {\n    community Publ1c {\n        authorization read-only;\n    }\n}\npolicy-options {\n" \
           "    community blue members 65000:100;\n}\n"
    got = mask_secrets(text, "juniper_junos")
    assert f"community {M} {{" in got and "community blue members" in got


def test_crlf_lines_keep_their_endings() -> None:
    got = mask_secrets("enable secret 5 $1$abc\r\nhostname r1\r\n", "cisco_ios")
    assert got == f"enable secret 5 {M}\r\nhostname r1\r\n"


def test_unknown_platform_with_custom_command_gets_every_rule() -> None:
    got = mask_secrets("snmp-server community S3cr3t RO\nset system radius-server 1.2.3.4 secret x\npsk=abc", "custom")
    assert "S3cr3t" not in got and " x" not in got and "abc" not in got
