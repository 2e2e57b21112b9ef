"""``sotp exporter icmp`` as a process on loopback: /probe, continuous /metrics, errors, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from exporters.icmp.resolve import ip_hash
from tests.conftest import REPO, sotp_cmd

from .conftest import value

BLACKBOX_FAMILIES = {
    "probe_dns_lookup_time_seconds", "probe_duration_seconds", "probe_icmp_duration_seconds",
    "probe_icmp_reply_hop_limit", "probe_ip_addr_hash", "probe_ip_protocol", "probe_success",
}


def hop(ip: str) -> float:
    f = "/proc/sys/net/ipv6/conf/lo/hop_limit" if ":" in ip else "/proc/sys/net/ipv4/ip_default_ttl"
    return float(Path(f).read_text())


def test_probe_loopback_targets(exporter: Callable[..., Any]) -> None:
    modules = {"icmp": {"prober": "icmp"}, "icmp4": {"icmp": {"preferred_ip_protocol": "ip4"}}}
    exp = exporter(config={"modules": modules})
    for target, module, ip, proto in [
        ("127.0.0.1", "icmp", "127.0.0.1", 4),
        ("127.9.8.7", "icmp4", "127.9.8.7", 4),
        ("::1", "icmp", "::1", 6),
    ]:
        m = exp.metrics(f"/probe?target={target}&module={module}")
        assert set(m["types"]) == BLACKBOX_FAMILIES, target
        assert set(m["types"].values()) == {"gauge"}
        assert value(m, "probe_success") == 1
        assert value(m, "probe_ip_protocol") == proto
        assert value(m, "probe_ip_addr_hash") == ip_hash(ip)
        assert value(m, "probe_icmp_reply_hop_limit") == hop(ip)
        rtt = value(m, "probe_icmp_duration_seconds", phase="rtt")
        assert 0 < rtt <= value(m, "probe_duration_seconds") < 1
        assert value(m, "probe_icmp_duration_seconds", phase="resolve") == value(m, "probe_dns_lookup_time_seconds")
    # The default module is "icmp" when none is given.
    assert value(exp.metrics("/probe?target=127.0.0.1"), "probe_success") == 1


def test_probe_with_count_reports_sotp_extras(exporter: Callable[..., Any]) -> None:
    exp = exporter(config={"modules": {"icmp3": {"icmp": {"count": 3, "interval": "50ms"}}}})
    start = time.monotonic()
    m = exp.metrics("/probe?target=127.0.0.1&module=icmp3")
    assert time.monotonic() - start >= 0.1  # the third echo leaves 2 × 50 ms after the first
    assert value(m, "sotp_probe_icmp_requests") == 3 and value(m, "sotp_probe_icmp_replies") == 3
    lo, avg, hi = (value(m, "sotp_probe_icmp_rtt_seconds", stat=s) for s in ("min", "avg", "max"))
    assert 0 < lo <= avg <= hi < 0.5
    assert value(m, "probe_icmp_duration_seconds", phase="rtt") == avg
    assert value(m, "probe_duration_seconds") >= 0.1


def test_probe_http_errors(exporter: Callable[..., Any]) -> None:
    exp = exporter()
    assert exp.get("/probe?module=icmp") == (400, "Target parameter is missing\n")
    assert exp.get("/probe?target=127.0.0.1&module=http_2xx") == (400, 'Unknown module "http_2xx"\n')
    status, body = exp.get("/probe?target=127.0.0.1", {"X-Prometheus-Scrape-Timeout-Seconds": "soon"})
    assert status == 500 and body.startswith("Failed to parse timeout from Prometheus header")
    assert exp.get("/-/healthy") == (200, "Healthy\n")


def test_default_run_pings_localhost_continuously_and_reports_socket_kind(exporter: Callable[..., Any]) -> None:
    exp = exporter()  # no --config: what `sotp up` starts
    time.sleep(2.3)
    m = exp.metrics()
    (key,) = [k for k in m["samples"] if k[0] == "sotp_icmp_requests_total"]
    labels = dict(key[1])
    assert labels["host"] == "localhost" and labels["ip"] in ("127.0.0.1", "::1")
    assert value(m, "sotp_icmp_requests_total", **labels) >= 2  # 1 s interval
    assert value(m, "sotp_icmp_responses_total", **labels) == value(m, "sotp_icmp_requests_total", **labels)
    modes = {dict(k[1])["family"]: dict(k[1])["mode"] for k in m["samples"] if k[0] == "sotp_icmp_socket_info"}
    assert modes["ipv4"] in ("raw", "datagram")
    assert f"ipv4 echo uses {modes['ipv4']} sockets" in exp.proc.output()


def test_continuous_histogram_and_counters(exporter: Callable[..., Any]) -> None:
    targets = ["127.0.0.2", "::1", "localhost"]
    exp = exporter(config={"continuous": {"targets": targets, "interval": "100ms", "timeout": "1s"}})
    time.sleep(1.5)
    m = exp.metrics()
    assert m["types"]["sotp_icmp_rtt_seconds"] == "histogram"
    assert m["types"]["sotp_icmp_requests_total"] == "counter"
    hosts = {dict(k[1])["host"] for k in m["samples"] if k[0] == "sotp_icmp_requests_total"}
    assert hosts == set(targets)
    for key in [k for k in m["samples"] if k[0] == "sotp_icmp_requests_total"]:
        labels = dict(key[1])
        req = value(m, "sotp_icmp_requests_total", **labels)
        resp = value(m, "sotp_icmp_responses_total", **labels)
        assert req >= 8 and resp == req, labels  # loopback never loses; in-flight echoes are not counted
        buckets = sorted(
            (float(dict(k[1])["le"]), v) for k, v in m["samples"].items()
            if k[0] == "sotp_icmp_rtt_seconds_bucket" and {**dict(k[1]), "le": ""} == {**labels, "le": ""}
        )
        assert len(buckets) == 21 and buckets[-1] == (float("inf"), resp)
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
        assert value(m, "sotp_icmp_rtt_seconds_count", **labels) == resp
        assert 0 < value(m, "sotp_icmp_rtt_seconds_sum", **labels) < resp * 0.01


def test_continuous_1024_loopback_targets_lose_nothing(exporter: Callable[..., Any]) -> None:
    targets = [f"127.2.{i // 250}.{i % 250 + 1}" for i in range(1024)]
    exp = exporter(config={"continuous": {"targets": targets, "interval": "1s", "timeout": "1s"}})
    time.sleep(3.2)
    m = exp.metrics()
    req = sum(v for k, v in m["samples"].items() if k[0] == "sotp_icmp_requests_total")
    resp = sum(v for k, v in m["samples"].items() if k[0] == "sotp_icmp_responses_total")
    assert req >= 2 * 1024 and resp == req
    assert value(m, "sotp_icmp_cycles_skipped_total") == 0


def test_sigterm_exits_cleanly(exporter: Callable[..., Any]) -> None:
    exp = exporter("--target", "127.0.0.1")
    exp.proc.popen.send_signal(signal.SIGTERM)
    assert exp.proc.popen.wait(10) == 0
    assert "icmp exporter stopping" in exp.proc.output()


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "icmp.yml"
    cfg.write_text("modules:\n  icmp:\n    icmp:\n      count: 0\n")
    res = subprocess.run(sotp_cmd("exporter", "icmp", "--config", str(cfg)), cwd=REPO, capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 2
    assert "modules.icmp.icmp.count: 0 is out of range" in res.stderr
    res = subprocess.run(sotp_cmd("exporter", "icmp", "--listen", "nowhere"), cwd=REPO, capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 2 and "--listen: 'nowhere' is not HOST:PORT" in res.stderr


def test_probe_debug_page(exporter: Callable[..., Any]) -> None:
    exp = exporter(config={"modules": {"icmp": {"icmp": {"preferred_ip_protocol": "ip4", "count": 2,
                                                           "interval": "10ms"}}}})
    status, body = exp.get("/probe?target=127.0.0.1&debug=true")
    assert status == 200
    logs, _, rest = body.partition("\n\n\n\nMetrics that would have been returned:\n")
    metrics, _, module = rest.partition("\n\n\n\nModule configuration:\n")
    assert logs.startswith("Logs for the probe:\n")
    assert "resolved 127.0.0.1 to 127.0.0.1" in logs and "2 of 2 echo(s) answered" in logs
    assert "probe succeeded" in logs
    assert "probe_success 1\n" in metrics
    assert "count: 2" in module and "preferred_ip_protocol: ip4" in module


def requests_of(m: dict[str, Any], host: str) -> float:
    return value(m, "sotp_icmp_requests_total", host=host, ip=host)


def test_reload_on_sighup_and_post(exporter: Callable[..., Any]) -> None:
    cont = {"targets": ["127.0.0.2"], "interval": "100ms"}
    exp = exporter(config={"continuous": cont})
    time.sleep(0.6)
    before = requests_of(exp.metrics(), "127.0.0.2")
    assert before >= 3
    assert exp.get("/probe?target=127.0.0.1&module=icmp4")[0] == 400

    new = {"continuous": {**cont, "targets": ["127.0.0.2", "127.0.0.3"]},
           "modules": {"icmp4": {"icmp": {"preferred_ip_protocol": "ip4"}}}}
    exp.config_path.write_text(yaml.safe_dump(new))
    exp.proc.popen.send_signal(signal.SIGHUP)
    time.sleep(0.8)
    m = exp.metrics()
    assert requests_of(m, "127.0.0.2") > before  # kept counting from where it was: no reset
    assert requests_of(m, "127.0.0.3") >= 3
    assert value(m, "sotp_icmp_config_last_reload_successful") == 1
    assert value(exp.metrics("/probe?target=127.0.0.1&module=icmp4"), "probe_success") == 1
    assert exp.get("/probe?target=127.0.0.1&module=icmp")[0] == 400  # the old default module is gone

    exp.config_path.write_text("continuous:\n  interval: never\n")
    status, body = exp.get("/-/reload", method="POST")
    assert status == 500 and "continuous.interval" in body and "invalid duration" in body
    m = exp.metrics()
    assert value(m, "sotp_icmp_config_last_reload_successful") == 0
    assert requests_of(m, "127.0.0.3") >= 3  # still running the previous configuration
    assert value(exp.metrics("/probe?target=127.0.0.1&module=icmp4"), "probe_success") == 1
    assert "reload failed, keeping the running configuration" in exp.proc.output()
