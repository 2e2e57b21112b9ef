"""Volatile lines never make a new version; real changes always do."""

from __future__ import annotations

import pytest

from worker.backup.platforms import PLATFORMS, digest, normalize

CASES = [
    ("cisco_ios", "! Last configuration change at 10:00:00 UTC\nhostname r1\n",
     "! Last configuration change at 11:30:00 UTC\nhostname r1\n", True),
    ("cisco_ios", "ntp clock-period 17179869\nhostname r1\n", "ntp clock-period 17179001\nhostname r1\n", True),
    ("cisco_ios", "Current configuration : 1200 bytes\nhostname r1\n",
     "Current configuration : 1300 bytes\nhostname r1\n", True),
    ("cisco_ios", "hostname r1\n", "hostname r2\n", False),
    ("cisco_ios", "hostname r1\r\n", "hostname r1   \n\n", True),  # line endings and trailing blanks
    ("juniper_junos", "## Last commit: 2026-01-01 by a\nset system host-name mx1\n",
     "## Last commit: 2026-02-02 by b\nset system host-name mx1\n", True),
    ("juniper_junos", "set system host-name mx1\n", "set system host-name mx2\n", False),
    ("arista_eos", "! Command: show running-config\n! Time: Mon Jan 1\nhostname a\n",
     "! Command: show running-config\n! Time: Tue Jan 2\nhostname a\n", True),
    ("cisco_nxos", "!Time: Mon Jan 1 10:00:00 2026\nhostname n\n",
     "!Time: Tue Jan 2 10:00:00 2026\nhostname n\n", True),
    ("linux", "2: eth0    inet 10.0.0.2/24 valid_lft 3600sec preferred_lft 3600sec\n",
     "2: eth0    inet 10.0.0.2/24 valid_lft 3500sec preferred_lft 3500sec\n", True),
    ("linux", "2: eth0    inet 10.0.0.2/24\n", "2: eth0    inet 10.0.0.3/24\n", False),
    ("linux", "2: eth0    inet 10.0.0.2/24 valid_lft 3600sec preferred_lft 3600sec\n",
     "2: eth0    inet 10.0.0.9/24 valid_lft 3500sec preferred_lft 3500sec\n", False),
]


@pytest.mark.parametrize(("platform", "a", "b", "same"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_digest_ignores_only_volatile_lines(platform: str, a: str, b: str, same: bool) -> None:
    p = PLATFORMS[platform]
    assert (digest(a, p) == digest(b, p)) is same


def test_normalize_keeps_real_lines_in_order() -> None:
    text = "Building configuration...\n! Last configuration change at x\nhostname r1\n!\ninterface Gi0/1\n"
    assert normalize(text, PLATFORMS["cisco_ios"]) == "hostname r1\n!\ninterface Gi0/1\n"
