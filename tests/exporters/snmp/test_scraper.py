"""Walk rules over the Session seam, and recorded devices replayed through walk + mapping.

The fixture folders hold a device's recorded varbinds (``walk.txt``, from snmpsim's recorded Cisco
C3560) and ``expected.prom``: what Debian's prometheus-snmp-exporter 0.21 served for the same device
with the same (upstream v0.21) if_mib module, timing lines removed. Replaying the walk through SOTP
must give that text byte for byte, packet counts included.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exporters.snmp.collector import CompiledModule, collect, to_families
from exporters.snmp.config import Module, load_config
from exporters.snmp.pdu import AgentError, Pdu, PortUnreachable, RequestTimeout
from exporters.snmp.scraper import parse_target, scrape
from exporters.snmp.server import SCRAPE_HELP
from sotp.codec.exposition import MetricFamily, format_families
from tests.exporters.snmp.fakes import UPSTREAM_V021, FakeSession, load_walk

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "snmp"
CASES = sorted(p for p in FIXTURES.glob("*/*") if (p / "walk.txt").exists())

TABLE = [Pdu(f"1.3.6.1.2.1.2.2.1.2.{i}", "OctetString", f"eth{i}".encode()) for i in range(1, 8)] + [
    Pdu("1.3.6.1.2.1.2.2.1.3.1", "Integer", 6),
    Pdu("1.3.6.1.2.1.1.3.0", "TimeTicks", 5),
]


def module(**kw: object) -> Module:
    m = Module(**kw)  # type: ignore[arg-type]
    m.validate("test")
    return m


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
async def test_recorded_device_matches_snmp_exporter_output(case: Path) -> None:
    mod = load_config(UPSTREAM_V021).modules[case.name]
    result = await scrape(FakeSession(load_walk(case / "walk.txt")), mod, "device")
    samples = collect(CompiledModule.build(mod), result.pdus)
    extra = []
    for name, value in (("snmp_scrape_packets_sent", result.packets), ("snmp_scrape_packets_retried", result.retries),
                        ("snmp_scrape_pdus_returned", len(result.pdus))):
        fam = MetricFamily(name, "gauge", SCRAPE_HELP[name])
        fam.add({}, float(value))
        extra.append(fam)
    families = sorted(to_families(samples) + extra, key=lambda f: f.name)
    assert format_families(families) == (case / "expected.prom").read_text()


async def test_bulk_walk_stops_at_subtree_end_and_counts_packets() -> None:
    s = FakeSession(TABLE)
    r = await scrape(s, module(walk=["1.3.6.1.2.1.2.2.1.2"], max_repetitions=3), "t")
    assert [p.oid.rsplit(".", 1)[1] for p in r.pdus] == ["1", "2", "3", "4", "5", "6", "7"]
    # 3 + 3 + (1 in subtree, then out): three GETBULKs.
    assert (r.packets, r.retries) == (3, 0)
    assert [c[0] for c in s.calls] == ["getbulk"] * 3


async def test_v1_walks_with_getnext_and_gets_one_oid_per_request() -> None:
    s = FakeSession(TABLE, version=1)
    r = await scrape(s, module(walk=["1.3.6.1.2.1.2.2.1.3"], get=["1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.9.0"]), "t")
    assert [p.oid for p in r.pdus] == ["1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.2.2.1.3.1"]
    assert [c[0] for c in s.calls] == ["get", "get", "getnext", "getnext"]


async def test_gets_are_chunked_by_max_repetitions_and_nosuch_dropped() -> None:
    s = FakeSession(TABLE)
    oids = [f"1.3.6.1.2.1.2.2.1.2.{i}" for i in range(1, 6)] + ["1.3.6.1.2.1.99.0"]
    r = await scrape(s, module(get=oids, max_repetitions=4), "t")
    assert len(r.pdus) == 5 and [len(c[1]) for c in s.calls] == [4, 2]


async def test_walk_of_a_scalar_falls_back_to_get() -> None:
    r = await scrape(FakeSession(TABLE), module(walk=["1.3.6.1.2.1.1.3.0"]), "t")
    assert [p.oid for p in r.pdus] == ["1.3.6.1.2.1.1.3.0"]


async def test_walk_ending_in_end_of_mib_view_does_not_get_the_root() -> None:
    # gosnmp (snmp_exporter) GETs the root only when the first varbind is past the subtree, not at the
    # end of the MIB view: the same packets are sent.
    s = FakeSession(TABLE)
    r = await scrape(s, module(walk=["1.3.9"]), "t")
    assert r.pdus == [] and [c[0] for c in s.calls] == ["getbulk"]


async def test_retries_are_counted_and_then_succeed() -> None:
    r = await scrape(FakeSession(TABLE, timeouts=2), module(walk=["1.3.6.1.2.1.2.2.1.3"], retries=3), "t")
    assert (r.packets, r.retries, len(r.pdus)) == (3, 2, 1)


async def test_timeout_after_all_retries_names_target_and_setting() -> None:
    with pytest.raises(RequestTimeout, match=r"no response from sw1:161 after 2 tries of 0.5s .*timeout/retries"):
        await scrape(FakeSession(TABLE, timeouts=5), module(walk=["1.3"], retries=1, timeout=0.5), "sw1:161")


async def test_refused_tries_are_retried_at_once_then_fail_as_refused() -> None:
    # gosnmp: ICMP port unreachable ends a try; the retries follow at once, then the scrape fails.
    with pytest.raises(PortUnreachable, match=r"sw1:161 refused 2 tries \(ICMP port unreachable.*port"):
        await scrape(FakeSession(TABLE, refused=5), module(walk=["1.3"], retries=1), "sw1:161")
    # An agent that starts answering on a retry is scraped as usual.
    r = await scrape(FakeSession(TABLE, refused=1), module(walk=["1.3.6.1.2.1.2.2.1.3"], retries=1), "t")
    assert (r.packets, r.retries, len(r.pdus)) == (2, 1, 1)
    # The last try decides: refused then silent is a timeout.
    with pytest.raises(RequestTimeout):
        await scrape(_RefusedThenSilent(TABLE), module(walk=["1.3"], retries=1), "t")


class _RefusedThenSilent(FakeSession):
    async def get_bulk(self, oids: object, max_repetitions: int) -> list[Pdu]:  # type: ignore[override]
        self.calls.append(("getbulk", ()))
        if len(self.calls) == 1:
            raise PortUnreachable("fake: refused")
        raise RequestTimeout("fake: no answer")


ERROR_STATUSES = [("tooBig", 1), ("noSuchName", 2), ("genErr", 5), ("noAccess", 6), ("resourceUnavailable", 13),
                  ("authorizationError", 16)]


@pytest.mark.parametrize("status", [c[1] for c in ERROR_STATUSES], ids=[c[0] for c in ERROR_STATUSES])
@pytest.mark.parametrize("version", [1, 2])
async def test_error_status_ends_the_walk_of_its_subtree_only(version: int, status: int) -> None:
    # gosnmp's walk: any error-status ends that subtree, keeping what came before; the next subtree is walked.
    s = FakeSession(TABLE, version=version, errors={"1.3.6.1.2.1.2.2.1.2.3": status})
    r = await scrape(s, module(walk=["1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.2.2.1.3"], max_repetitions=3), "t")
    # v2c: one GETBULK brings .1-.3, the next (from .3) is answered with the error; v1: GETNEXTs up to .3.
    assert [p.oid for p in r.pdus] == [f"1.3.6.1.2.1.2.2.1.2.{i}" for i in (1, 2, 3)] + ["1.3.6.1.2.1.2.2.1.3.1"]
    assert r.retries == 0  # an answer, even an error, is not retried


async def test_error_status_at_the_first_request_walks_nothing() -> None:
    s = FakeSession(TABLE, errors={"1.3.6.1.2.1.2.2.1.2": 5})
    r = await scrape(s, module(walk=["1.3.6.1.2.1.2.2.1.2"]), "t")
    assert r.pdus == [] and (r.packets, r.retries) == (1, 0)


async def test_error_status_on_the_get_of_a_scalar_walk_is_quiet() -> None:
    s = FakeSession(TABLE, errors={"1.3.6.1.2.1.1.3.0": 6})
    r = await scrape(s, module(walk=["1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.2.2.1.3"]), "t")
    assert [p.oid for p in r.pdus] == ["1.3.6.1.2.1.2.2.1.3.1"]


async def test_error_status_on_a_get_fails_the_scrape() -> None:
    # snmp_exporter: an error-status answering the module's GETs fails the scrape...
    with pytest.raises(AgentError, match="error-status 5"):
        await scrape(FakeSession(TABLE, status=5), module(get=["1.3.6.1.2.1.1.3.0"]), "t")
    # ...except v1's noSuchName, which only says that OID is absent.
    r = await scrape(FakeSession(TABLE, version=1, status=2), module(get=["1.3.6.1.2.1.1.3.0"]), "t")
    assert r.pdus == [] and r.packets == 1


async def test_non_increasing_oids_as_gosnmp_checks_them() -> None:
    class Agent(FakeSession):
        """Answers each GETBULK with ``answers[n]`` (the n-th request)."""

        def __init__(self, answers: list[list[str]]) -> None:
            super().__init__(TABLE)
            self.answers = answers

        async def get_bulk(self, oids: object, max_repetitions: int) -> list[Pdu]:  # type: ignore[override]
            self.calls.append(("getbulk", ()))
            return [Pdu(o, "OctetString", b"x") for o in self.answers[len(self.calls) - 1]]

    col = "1.3.6.1.2.1.2.2.1.2"
    walk = module(walk=[col])
    # An answer that repeats the OID asked for fails (gosnmp's "OID not increasing")...
    with pytest.raises(AgentError, match=r"the one it was asked to go past.*allow_nonincreasing_oids"):
        await scrape(Agent([[f"{col}.1", f"{col}.2"], [f"{col}.2", f"{col}.3"]]), walk, "t")
    allowed = await scrape(Agent([[f"{col}.1", f"{col}.2"], [f"{col}.2", "1.3.9"]]),
                           module(walk=[col], allow_nonincreasing_oids=True), "t")
    assert [p.oid for p in allowed.pdus] == [f"{col}.1", f"{col}.2", f"{col}.2"]
    # ...while OIDs out of order but not the one asked for are taken as they come, as gosnmp does.
    r = await scrape(Agent([[f"{col}.2", f"{col}.1", "1.3.9"]]), walk, "t")
    assert [p.oid for p in r.pdus] == [f"{col}.2", f"{col}.1"]
    # A walk led back to an OID already asked for is a loop (gosnmp would spin until the scrape timeout).
    with pytest.raises(AgentError, match=r"loops: the walk of .* came back to"):
        await scrape(Agent([[f"{col}.1", f"{col}.3"], [f"{col}.1"], [f"{col}.3"]]), walk, "t")


TARGETS = [
    ("host", "sw1", ("sw1", 161)),
    ("host-port", "10.0.0.1:1161", ("10.0.0.1", 1161)),
    ("ipv6-bracket", "[::1]:1161", ("::1", 1161)),
    ("ipv6-bare", "::1", ("::1", 161)),
]


@pytest.mark.parametrize(("text", "want"), [c[1:] for c in TARGETS], ids=[c[0] for c in TARGETS])
def test_parse_target(text: str, want: tuple[str, int]) -> None:
    assert parse_target(text) == want


@pytest.mark.parametrize("text", ["sw1:http", "sw1:0", "[::1", ":161"])
def test_parse_target_rejects(text: str) -> None:
    from exporters.snmp.pdu import TargetError

    with pytest.raises(TargetError, match="invalid target"):
        parse_target(text)
