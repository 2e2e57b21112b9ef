"""The continuous page's fast renderer produces exactly what the kernel's generic exposition writer does."""

from __future__ import annotations

from exporters.icmp.config import Continuous
from exporters.icmp.continuous import ContinuousPinger
from exporters.icmp.pinger import Pinger
from sotp.codec.exposition import MetricFamily, format_families, format_value


def reference(cp: ContinuousPinger) -> str:
    """The same page built with MetricFamily + format_families (one dict per sample)."""
    fams = {
        "req": MetricFamily("sotp_icmp_requests_total", "counter",
                            "Echo requests whose outcome is known (replied, timed out or not sent)"),
        "resp": MetricFamily("sotp_icmp_responses_total", "counter", "Echo replies received within the timeout"),
        "hist": MetricFamily("sotp_icmp_rtt_seconds", "histogram", "Round-trip time of echo replies"),
        "err": MetricFamily("sotp_icmp_send_errors_total", "counter",
                            "Echo requests the kernel refused to send (counted as requests, not responses)"),
        "hop": MetricFamily("sotp_icmp_reply_hop_limit", "gauge", "Hop limit (TTL for IPv4) of the last reply"),
        "res": MetricFamily("sotp_icmp_resolve_errors_total", "counter", "Failed resolutions of a target name"),
        "skip": MetricFamily("sotp_icmp_cycles_skipped_total", "counter",
                             "Continuous ping cycles skipped because the previous one overran the interval"),
        "pskip": MetricFamily("sotp_icmp_pings_skipped_total", "counter",
                              "Continuous pings not sent because max_in_flight echoes were already queued"),
    }
    for (host, ip), st in sorted(cp.stats.items()):
        labels = {"host": host, "ip": ip}
        fams["req"].add(labels, float(st.requests))
        fams["resp"].add(labels, float(st.responses))
        fams["err"].add(labels, float(st.send_errors))
        cum = 0
        for bound, n in zip(cp.bounds, st.buckets, strict=True):
            cum += n
            fams["hist"].add({**labels, "le": format_value(bound)}, float(cum), "_bucket")
        fams["hist"].add({**labels, "le": "+Inf"}, float(st.responses), "_bucket")
        fams["hist"].add(labels, st.rtt_sum, "_sum")
        fams["hist"].add(labels, float(st.responses), "_count")
        if st.hop_limit is not None:
            fams["hop"].add(labels, float(st.hop_limit))
    for t in sorted(cp.targets, key=lambda t: t.host):
        fams["res"].add({"host": t.host}, float(t.resolve_errors))
    fams["skip"].add({}, float(cp.cycles_skipped))
    fams["pskip"].add({}, float(cp.pings_skipped))
    return format_families(fams.values())


async def test_render_matches_the_generic_writer() -> None:
    hosts = ["b.example", "a.example", 'quote"d\\host', "::1"]
    cp = ContinuousPinger(Continuous(targets=hosts), Pinger())
    for i, host in enumerate(hosts):
        st = cp._stats(host, f"127.0.0.{i + 1}" if host != "::1" else "::1")
        st.requests = [0, 7, 1_000_000, 123_456_789][i]
        st.responses = st.requests - i
        st.send_errors = i
        st.rtt_sum = [0.0, 1.25e-05, 12345.678, 3.0][i]
        st.buckets = [(i * j) % 5 for j in range(len(cp.bounds))]
        st.hop_limit = None if i == 0 else 60 + i
    cp.targets[1].resolve_errors = 3
    cp.cycles_skipped = 2
    cp.pings_skipped = 1_500_000
    got = await cp.render(chunk=1)  # yield after every series: the output must not change
    assert got == reference(cp)
    assert 'host="quote\\"d\\\\host"' in got  # label values escaped by the kernel's writer
    assert '127.0.0.3"} 1e+06\n' in got and '"::1"} 1.23456789e+08\n' in got  # Go's %g, not digits


async def test_render_without_targets_is_empty() -> None:
    assert await ContinuousPinger(Continuous(), Pinger()).render() == ""
