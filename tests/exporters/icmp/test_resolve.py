"""Address choice (blackbox's chooseProtocol) and probe_ip_addr_hash."""

from __future__ import annotations

import pytest

from exporters.icmp.resolve import ResolveFailed, choose_address, ip_hash


def _fnv1a32(data: bytes) -> int:
    # Independent textbook FNV-1a, checked first against the published vectors below.
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) % 2**32
    return h


def test_reference_fnv_vectors() -> None:
    assert _fnv1a32(b"") == 0x811C9DC5 and _fnv1a32(b"a") == 0xE40C292C and _fnv1a32(b"foobar") == 0xBF9CF968


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.1.2.3", "::1", "fe80::1"])
def test_ip_hash_is_fnv1a_of_address_bytes(ip: str) -> None:
    import ipaddress

    assert ip_hash(ip) == float(_fnv1a32(ipaddress.ip_address(ip).packed))


@pytest.mark.parametrize(
    ("target", "preferred", "fallback", "want"),
    [
        ("127.0.0.1", "ip6", True, ("127.0.0.1", 4)),  # fallback to the only family there is
        ("127.0.0.1", "ip4", False, ("127.0.0.1", 4)),
        ("::1", "ip4", True, ("::1", 6)),
        ("::1", "ip6", False, ("::1", 6)),
    ],
    ids=["v4-fallback", "v4-strict", "v6-fallback", "v6-strict"],
)
async def test_choose_address_literals(target: str, preferred: str, fallback: bool, want: tuple[str, int]) -> None:
    r = await choose_address(target, preferred, fallback)  # type: ignore[arg-type]
    assert (r.ip, r.version) == want
    assert r.lookup_seconds >= 0


@pytest.mark.parametrize(("target", "preferred"), [("127.0.0.1", "ip6"), ("::1", "ip4")])
async def test_no_fallback_fails_with_hint(target: str, preferred: str) -> None:
    with pytest.raises(ResolveFailed, match="ip_protocol_fallback"):
        await choose_address(target, preferred, False)  # type: ignore[arg-type]


async def test_localhost_resolves_to_loopback() -> None:
    r = await choose_address("localhost", "ip4", True)
    assert r.ip.startswith("127.") or r.ip == "::1"
