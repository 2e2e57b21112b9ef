"""The exporter inside network namespaces made by the tests: socket kind selection, unreachable and
silent targets, the DF bit, and a path with known delay and loss.

Delay and loss come from ``tun_responder.py`` behind a TUN device, not ``tc netem``: this machine's
kernel is built without ``CONFIG_NET_SCH_NETEM`` (``tc qdisc add ... netem`` answers "Specified qdisc
kind is unknown"). The responder's loss is deterministic (every 4th echo), so figures are exact.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import REPO, free_port, missing, sotp_cmd

from .conftest import Netns, value, veth

Exporter = Callable[..., Any]


def test_datagram_sockets_when_ping_group_range_allows(netns: Callable[[str], Netns], exporter: Exporter) -> None:
    ns = netns("dgram")
    ns.sysctl("net.ipv4.ping_group_range", "0 0")  # gid 0 may open unprivileged ICMP sockets here
    exp = exporter("--target", "127.0.0.1", ns=ns)
    m = exp.metrics("/probe?target=127.0.0.1")
    assert value(m, "probe_success") == 1
    assert value(m, "probe_icmp_reply_hop_limit") > 0  # from IP_RECVTTL: no IP header on datagram sockets
    assert value(exp.metrics("/probe?target=::1"), "probe_success") == 1
    m = exp.metrics()
    assert value(m, "sotp_icmp_socket_info", family="ipv4", mode="datagram", source="") == 1
    assert value(m, "sotp_icmp_socket_info", family="ipv6", mode="datagram", source="") == 1
    assert "ipv4 echo uses datagram sockets (net.ipv4.ping_group_range=(0, 0) covers gid 0)" in exp.proc.output()


def test_raw_sockets_when_ping_group_range_excludes(netns: Callable[[str], Netns], exporter: Exporter) -> None:
    ns = netns("raw")
    assert ns.sysctl("net.ipv4.ping_group_range").split() == ["1", "0"]  # the default
    exp = exporter("--target", "127.0.0.1", ns=ns)
    assert value(exp.metrics("/probe?target=127.0.0.1"), "probe_success") == 1
    assert value(exp.metrics(), "sotp_icmp_socket_info", family="ipv4", mode="raw", source="") == 1
    assert "ipv4 echo uses raw sockets (datagram sockets not allowed" in exp.proc.output()


def test_forced_datagram_without_permission_says_which_sysctl(netns: Callable[[str], Netns]) -> None:
    ns = netns("nodgram")
    argv = ["ip", "netns", "exec", ns.name,
            *sotp_cmd("exporter", "icmp", "--socket", "datagram", "--listen", f"127.0.0.1:{free_port()}")]
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=30,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert res.returncode == 1
    assert "net.ipv4.ping_group_range" in res.stderr and "no ICMP socket can be opened" in res.stderr


def test_unreachable_silent_and_answering_targets(netns: Callable[[str], Netns], exporter: Exporter) -> None:
    a, b = netns("prober"), netns("peer")
    veth(a, "va", "10.79.0.1", b, "vb", "10.79.0.2")
    a.ip("route", "add", "blackhole", "10.80.0.0/24")
    a.ip("route", "add", "unreachable", "10.81.0.0/24")
    exp = exporter(config={"modules": {"icmp": {"icmp": {"preferred_ip_protocol": "ip4"}}}}, ns=a)

    m = exp.metrics("/probe?target=10.79.0.2")
    assert value(m, "probe_success") == 1
    assert value(m, "probe_icmp_reply_hop_limit") == 64  # one veth, no router in between

    b.sysctl("net.ipv4.icmp_echo_ignore_all", "1")  # the peer stays up but stops answering
    m = exp.metrics("/probe?target=10.79.0.2", {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
    assert value(m, "probe_success") == 0
    assert 0.95 <= value(m, "probe_duration_seconds") < 1.8  # waited the header's 1.5 s minus 0.5 s
    assert ("probe_icmp_reply_hop_limit", ()) not in m["samples"]

    for target in ("10.80.0.1", "10.81.0.1"):  # the kernel refuses these sends at once
        m = exp.metrics(f"/probe?target={target}", {"X-Prometheus-Scrape-Timeout-Seconds": "3"})
        assert value(m, "probe_success") == 0, target
        assert value(m, "probe_duration_seconds") < 0.5, target
        assert value(m, "probe_ip_protocol") == 4


@pytest.mark.parametrize("mode", ["raw", "datagram"])
def test_dont_fragment(netns: Callable[[str], Netns], exporter: Exporter, mode: str) -> None:
    a, b = netns("dfa"), netns("dfb")
    veth(a, "va", "10.78.0.1", b, "vb", "10.78.0.2", mtu=1280)
    a.ip("addr", "add", "fd00:78::1/64", "dev", "va", "nodad")
    b.ip("addr", "add", "fd00:78::2/64", "dev", "vb", "nodad")
    if mode == "datagram":
        a.sysctl("net.ipv4.ping_group_range", "0 0")
    modules = {
        f"{name}{v}": {"timeout": "2s", "icmp": {"preferred_ip_protocol": f"ip{v}", "payload_size": size,
                                                  "dont_fragment": df}}
        for v in (4, 6) for name, size, df in (("frag", 1400, False), ("df", 1400, True), ("df_small", 1000, True))
    }
    exp = exporter("--socket", mode, config={"modules": modules}, ns=a)
    for v, target in ((4, "10.78.0.2"), (6, "fd00:78::2")):
        assert value(exp.metrics(f"/probe?target={target}&module=frag{v}"), "probe_success") == 1  # fragmented
        assert value(exp.metrics(f"/probe?target={target}&module=df_small{v}"), "probe_success") == 1  # fits
        m = exp.metrics(f"/probe?target={target}&module=df{v}")
        assert value(m, "probe_success") == 0, target  # 1,400 bytes of data, DF, 1,280-byte MTU: EMSGSIZE
        assert value(m, "probe_duration_seconds") < 0.5
    assert exp.proc.output().count("Message too long") == 2
    assert value(exp.metrics(), "sotp_icmp_socket_info", family="ipv4", mode=mode, source="") == 1


def test_known_delay_and_loss(netns: Callable[[str], Netns], exporter: Exporter,
                              tun_responder: Callable[..., Callable[[], dict[str, int]]]) -> None:
    ns = netns("delay")
    stats = tun_responder(ns, "10.77.0", delay=0.04, drop_every=4)

    # /probe with count 8: echoes 4 and 8 are dropped, the rest come back 40 ms later.
    probe_cfg = {"timeout": "2s", "icmp": {"preferred_ip_protocol": "ip4", "count": 8, "interval": "20ms"}}
    exp = exporter(config={"modules": {"m8": probe_cfg}}, ns=ns)
    m = exp.metrics("/probe?target=10.77.0.2&module=m8")
    assert stats() == {"requests": 8, "replies": 6}
    assert value(m, "sotp_probe_icmp_requests") == 8 and value(m, "sotp_probe_icmp_replies") == 6
    assert value(m, "probe_success") == 1
    assert value(m, "sotp_probe_icmp_rtt_seconds", stat="min") >= 0.040
    assert value(m, "sotp_probe_icmp_rtt_seconds", stat="max") < 0.2  # the responder's own scheduling adds some
    assert value(m, "probe_icmp_reply_hop_limit") == 61  # the responder's TTL
    exp.proc.stop()

    # Continuous: 50 ms interval; a timeout (150 ms) shorter than the gap between drops (200 ms), so at
    # most one dropped echo is undecided at a scrape and requests - responses is within 1 of requests / 4.
    cont = {"targets": ["10.77.0.2"], "interval": "50ms", "timeout": "150ms", "preferred_ip_protocol": "ip4"}
    exp = exporter(config={"continuous": cont}, ns=ns)
    labels = {"host": "10.77.0.2", "ip": "10.77.0.2"}
    deadline = time.monotonic() + 60  # 25 rounds take 1.25 s on a quiet machine; wait for them, not a clock
    while True:
        m = exp.metrics()
        if value(m, "sotp_icmp_requests_total", **labels) >= 25 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    req = value(m, "sotp_icmp_requests_total", **labels)
    resp = value(m, "sotp_icmp_responses_total", **labels)
    assert req >= 25
    lost_by_responder = (stats()["requests"] - 8) // 4  # its drop counter continues from the probe
    assert abs((req - resp) - req // 4) <= 1, (req, resp)
    assert req - resp <= lost_by_responder
    # Every reply took the responder's 40 ms at least, and none reached the 204.8 ms bucket's bound.
    assert value(m, "sotp_icmp_rtt_seconds_bucket", **labels, le="0.0256") == 0
    assert value(m, "sotp_icmp_rtt_seconds_bucket", **labels, le="0.2048") == resp
    mean = value(m, "sotp_icmp_rtt_seconds_sum", **labels) / value(m, "sotp_icmp_rtt_seconds_count", **labels)
    assert mean >= 0.040


def test_unresolvable_continuous_target_does_not_hold_up_others(quiet_dns: Netns, exporter: Exporter) -> None:
    cont = {"targets": ["no-such-host.invalid", "127.0.0.1"], "interval": "100ms", "preferred_ip_protocol": "ip4"}
    exp = exporter(config={"continuous": cont}, ns=quiet_dns)
    time.sleep(1.2)
    m = exp.metrics()
    assert value(m, "sotp_icmp_resolve_errors_total", host="no-such-host.invalid") >= 1
    assert value(m, "sotp_icmp_resolve_errors_total", host="127.0.0.1") == 0
    assert value(m, "sotp_icmp_requests_total", host="127.0.0.1", ip="127.0.0.1") >= 8
    assert not [k for k in m["samples"] if k[0] == "sotp_icmp_requests_total" and ("host", "no-such-host.invalid")
                in k[1]]
    assert "cannot resolve 'no-such-host.invalid'" in exp.proc.output()


def test_ipv6_link_local_target_with_zone(netns: Callable[[str], Netns], exporter: Exporter) -> None:
    a, b = netns("ll-a"), netns("ll-b")
    for ns in (a, b):  # link-local addresses usable at once, without duplicate address detection
        ns.sysctl("net.ipv6.conf.default.accept_dad", "0")
    veth(a, "va", "10.84.0.1", b, "vb", "10.84.0.2")
    deadline = time.monotonic() + 5
    while not (out := b.run("ip", "-6", "-o", "addr", "show", "dev", "vb", "scope", "link").stdout):
        assert time.monotonic() < deadline, "no link-local address on vb"
        time.sleep(0.05)
    peer = out.split()[3].split("/")[0]
    exp = exporter(config={"modules": {"icmp": {"icmp": {"preferred_ip_protocol": "ip6"}}}}, ns=a)
    m = exp.metrics(f"/probe?target={peer}%25va")  # %25: the zone separator, URL-encoded
    assert value(m, "probe_success") == 1
    assert value(m, "probe_ip_protocol") == 6
    assert value(m, "probe_icmp_reply_hop_limit") == 64


def test_probe_timeout_covers_waiting_for_a_slot(netns: Callable[[str], Netns], exporter: Exporter) -> None:
    a, b = netns("slot-a"), netns("slot-b")
    veth(a, "va", "10.85.0.1", b, "vb", "10.85.0.2")
    b.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
    mod = {"icmp": {"icmp": {"preferred_ip_protocol": "ip4"}}}
    exp = exporter("--max-in-flight", "1", config={"modules": mod}, ns=a)
    # Occupy the only slot with an echo to the silent peer for ~3 s, then probe loopback with a 1 s budget.
    blocker = subprocess.Popen(["ip", "netns", "exec", a.name, sys.executable, "-c",
                                f"import urllib.request as u; u.urlopen(u.Request('{exp.base}/probe?target=10.85.0.2',"
                                " headers={'X-Prometheus-Scrape-Timeout-Seconds': '3.5'}), timeout=10).read()"])
    try:
        time.sleep(0.5)
        start = time.monotonic()
        m = exp.metrics("/probe?target=127.0.0.1", {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
        assert time.monotonic() - start < 2.5
        assert value(m, "probe_success") == 0  # never got a slot within its 1 s
        assert 0.9 <= value(m, "probe_duration_seconds") < 1.8
    finally:
        blocker.wait(10)
    assert value(exp.metrics("/probe?target=127.0.0.1"), "probe_success") == 1  # slot free again


def test_continuous_backlog_is_bounded(netns: Callable[[str], Netns], exporter: Exporter) -> None:
    a, b = netns("backlog-a"), netns("backlog-b")
    veth(a, "va", "10.86.0.1", b, "vb", "10.86.0.2")
    targets = [f"10.86.0.{i}" for i in range(2, 12)]
    for t in targets[1:]:
        b.ip("addr", "add", f"{t}/24", "dev", "vb")
    b.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
    # 10 silent targets every 100 ms want 100 echoes/s; one slot held 1 s per echo allows 1/s.
    cont = {"targets": targets, "interval": "100ms", "timeout": "1s", "preferred_ip_protocol": "ip4"}
    started = time.monotonic()
    exp = exporter("--max-in-flight", "1", config={"continuous": cont}, ns=a)
    deadline = started + 60
    while True:  # wait until the scheduler has had to skip many echoes (2.5 s on a quiet machine)
        m = exp.metrics()
        if value(m, "sotp_icmp_pings_skipped_total") >= 150 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    req = sum(v for k, v in m["samples"].items() if k[0] == "sotp_icmp_requests_total")
    # One slot, held 1 s per silent echo: at most one echo per elapsed second got out; all timed out.
    assert 1 <= req <= int(elapsed) + 1
    assert sum(v for k, v in m["samples"].items() if k[0] == "sotp_icmp_responses_total") == 0
    assert value(m, "sotp_icmp_pings_skipped_total") >= 150  # the rest were skipped, not queued
    assert value(m, "sotp_icmp_in_flight") <= 1
    start = time.monotonic()
    exp.proc.popen.terminate()
    assert exp.proc.popen.wait(10) == 0 and time.monotonic() - start < 5


def test_ttl_and_hop_limit_through_a_router(netns: Callable[[str], Netns], exporter: Exporter) -> None:
    a, r, b = netns("hop-a"), netns("hop-r"), netns("hop-b")
    veth(a, "va", "10.87.0.1", r, "ra", "10.87.0.2")
    veth(r, "rb", "10.88.0.1", b, "vb", "10.88.0.2")
    r.sysctl("net.ipv4.ip_forward", "1")
    a.ip("route", "add", "10.88.0.0/24", "via", "10.87.0.2")
    b.ip("route", "add", "10.87.0.0/24", "via", "10.88.0.1")
    mods = {f"ttl{n}": {"timeout": "1s", "icmp": {"preferred_ip_protocol": "ip4", "ttl": n}} for n in (1, 2)}
    mods["default"] = {"timeout": "1s", "icmp": {"preferred_ip_protocol": "ip4"}}
    exp = exporter(config={"modules": mods}, ns=a)
    m = exp.metrics("/probe?target=10.88.0.2&module=default")
    assert value(m, "probe_success") == 1
    assert value(m, "probe_icmp_reply_hop_limit") == 63  # B answers with 64, the router takes one
    assert value(exp.metrics("/probe?target=10.88.0.2&module=ttl2"), "probe_success") == 1
    assert value(exp.metrics("/probe?target=10.88.0.2&module=ttl1"), "probe_success") == 0  # expires at R
    assert value(exp.metrics("/probe?target=10.87.0.2&module=ttl1"), "probe_success") == 1  # one hop is fine


def test_source_address(netns: Callable[[str], Netns], exporter: Exporter) -> None:
    ns = netns("src")
    ns.ip("addr", "add", "127.0.0.77/8", "dev", "lo")
    mods = {"from77": {"timeout": "1s", "icmp": {"preferred_ip_protocol": "ip4", "source_ip_address": "127.0.0.77"}},
            "from_missing": {"timeout": "1s", "icmp": {"preferred_ip_protocol": "ip4",
                                                       "source_ip_address": "10.89.0.1"}}}
    exp = exporter(config={"modules": mods}, ns=ns)
    assert value(exp.metrics("/probe?target=127.0.0.5&module=from77"), "probe_success") == 1
    assert value(exp.metrics(), "sotp_icmp_socket_info", family="ipv4", mode="raw", source="127.0.0.77") == 1
    m = exp.metrics("/probe?target=127.0.0.5&module=from_missing")  # not an address of this namespace
    assert value(m, "probe_success") == 0
    assert "cannot bind an icmp socket to source address '10.89.0.1'" in exp.proc.output()


def test_without_cap_net_raw_only_datagram_sockets_work(netns: Callable[[str], Netns],
                                                        exporter: Exporter) -> None:
    """An unprivileged deployment: no CAP_NET_RAW (dropped from the bounding set with setpriv, as a
    container without NET_RAW has it), so only the ping_group_range path can work."""
    setpriv = ["setpriv", "--bounding-set=-net_raw", "--"]
    if subprocess.run(["setpriv", "--version"], capture_output=True).returncode != 0:
        missing("setpriv (util-linux) is needed to drop CAP_NET_RAW")
    closed = netns("nocap")
    argv = ["ip", "netns", "exec", closed.name, *setpriv,
            *sotp_cmd("exporter", "icmp", "--listen", f"127.0.0.1:{free_port()}")]
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=30,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert res.returncode == 1
    assert "raw: permission denied" in res.stderr and "ping_group_range" in res.stderr

    open_ns = netns("nocap-dgram")
    open_ns.sysctl("net.ipv4.ping_group_range", "0 0")
    exp = exporter("--target", "127.0.0.1", ns=open_ns, prefix=setpriv)
    assert value(exp.metrics("/probe?target=127.0.0.1"), "probe_success") == 1
    assert value(exp.metrics("/probe?target=::1"), "probe_success") == 1
    assert value(exp.metrics(), "sotp_icmp_socket_info", family="ipv4", mode="datagram", source="") == 1
