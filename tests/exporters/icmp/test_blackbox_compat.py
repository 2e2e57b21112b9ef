"""Same targets through Debian's prometheus-blackbox-exporter (0.23) and ours: the same families, HELP,
types and series, and equal values where the value is not a timing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Proc, free_port, require_binary, wait_for_port

from .conftest import Exporter, Netns, veth

MODULES: dict[str, Any] = {
    "icmp": {"prober": "icmp", "timeout": "5s"},
    "icmp4": {"prober": "icmp", "timeout": "5s", "icmp": {"preferred_ip_protocol": "ip4"}},
    "icmp4_strict": {"prober": "icmp", "timeout": "5s",
                     "icmp": {"preferred_ip_protocol": "ip4", "ip_protocol_fallback": False}},
}
EXACT = ("probe_success", "probe_ip_protocol", "probe_ip_addr_hash", "probe_icmp_reply_hop_limit")


@pytest.fixture
def blackbox(spawn: Callable[..., Proc], tmp_path: Path) -> Callable[[Netns | None], Exporter]:
    binary = require_binary("prometheus-blackbox-exporter", "/usr/bin/prometheus-blackbox-exporter")
    cfg = tmp_path / "blackbox.yml"
    cfg.write_text(yaml.safe_dump({"modules": MODULES}))

    def start(ns: Netns | None = None) -> Exporter:
        port = free_port()
        argv = [binary, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"]
        if ns is not None:
            argv = ["ip", "netns", "exec", ns.name, *argv]
        proc = spawn(argv, name=f"blackbox-{port}")
        exp = Exporter(proc, port, ns)
        if ns is None:
            wait_for_port(port)
        else:
            deadline = time.monotonic() + 20
            while "Listening on" not in proc.output():
                assert time.monotonic() < deadline, proc.output()
                time.sleep(0.05)
        return exp

    return start


def compare(ours: Exporter, theirs: Exporter, target: str, module: str,
            headers: dict[str, str] | None = None) -> dict[str, Any]:
    path = f"/probe?target={target}&module={module}"
    o, t = ours.metrics(path, headers), theirs.metrics(path, headers)
    where = f"{target} ({module})"
    assert o["types"] == t["types"], where
    assert o["help"] == t["help"], where
    assert set(o["samples"]) == set(t["samples"]), where
    for key, v in t["samples"].items():
        if key[0] in EXACT:
            assert o["samples"][key] == v, (where, key)
    return o


def test_loopback_targets_match_blackbox(exporter: Callable[..., Exporter], blackbox: Callable[..., Exporter]) -> None:
    ours, theirs = exporter(config={"modules": MODULES}), blackbox()
    for target, module in [("127.0.0.1", "icmp"), ("127.4.5.6", "icmp4"), ("::1", "icmp"), ("::1", "icmp4"),
                            ("localhost", "icmp"), ("localhost", "icmp4")]:
        o = compare(ours, theirs, target, module)
        assert o["samples"][("probe_success", ())] == 1, target
    # Resolution refused by the protocol settings: both fail the same way, with the same series.
    o = compare(ours, theirs, "::1", "icmp4_strict")
    assert o["samples"][("probe_success", ())] == 0
    # Request errors: same status and text.
    for path in ("/probe?module=icmp", "/probe?target=127.0.0.1&module=nope"):
        assert ours.get(path) == theirs.get(path), path


def test_failures_match_blackbox_in_a_namespace(quiet_dns: Netns, netns: Callable[[str], Netns],
                                                exporter: Callable[..., Exporter],
                                                blackbox: Callable[..., Exporter]) -> None:
    ns, peer = quiet_dns, netns("bbpeer")
    veth(ns, "va", "10.82.0.1", peer, "vb", "10.82.0.2")
    peer.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
    ns.ip("route", "add", "blackhole", "10.83.0.0/24")
    ours, theirs = exporter(config={"modules": MODULES}, ns=ns), blackbox(ns)
    for target in ("no-such-host.invalid", "10.83.0.1"):
        o = compare(ours, theirs, target, "icmp4")
        assert o["samples"][("probe_success", ())] == 0, target
    # A silent host: both wait for the scrape timeout minus 0.5 s.
    hdr = {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}
    o = compare(ours, theirs, "10.82.0.2", "icmp4", hdr)
    t = theirs.metrics("/probe?target=10.82.0.2&module=icmp4", hdr)
    assert o["samples"][("probe_success", ())] == 0
    assert abs(o["samples"][("probe_duration_seconds", ())] - t["samples"][("probe_duration_seconds", ())]) < 0.5


def test_datagram_sockets_match_blackbox(netns: Callable[[str], Netns], exporter: Callable[..., Exporter],
                                         blackbox: Callable[..., Exporter]) -> None:
    ns = netns("bbdgram")
    ns.sysctl("net.ipv4.ping_group_range", "0 0")  # both exporters use unprivileged sockets here
    ours, theirs = exporter(config={"modules": MODULES}, ns=ns), blackbox(ns)
    for target, module in [("127.0.0.1", "icmp"), ("::1", "icmp"), ("localhost", "icmp4")]:
        o = compare(ours, theirs, target, module)
        assert o["samples"][("probe_success", ())] == 1, target
        assert ("probe_icmp_reply_hop_limit", ()) in o["samples"], target
    assert "ipv4 echo uses datagram sockets" in ours.proc.output()
