"""Jobs derived from sotp.yml's devices: (issue 23, points 2 and 5): one device, one `device` label on its SNMP
targets, its pinged series and its backups; module and auth per device; nothing silently dropped."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from sotp.config import Config
from worker.backup.config import backup_config
from worker.scrape.config import worker_config
from worker.scrape.discovery import JobDiscovery
from worker.scrape.relabel import compile_steps, process
from worker.scrape.targets import build_targets

CONFIG = Config(
    snmp={"module": "if_mib,system", "auth": "public_v2", "exporter": "127.0.0.1:19116", "targets": ["192.0.2.9"]},
    icmp={"exporter": "127.0.0.1:19115"},
    devices=[
        {"name": "edge1", "address": "192.0.2.1", "labels": {"site": "lab"},
         "snmp": {"target": "192.0.2.1:11161", "module": "if_mib", "auth": "public_v1"}, "icmp": True,
         "backup": {"device_type": "cisco_ios", "username": "u", "password": "env:P", "port": 2222}},
        {"name": "core", "address": "core.example", "icmp": {"address": "198.51.100.7"}},
    ],
)


def targets(job_name: str) -> list[tuple[str, dict[str, str]]]:
    job = next(j for j in worker_config(CONFIG).jobs if j.cfg.job_name == job_name)
    disc = JobDiscovery.for_job(job.cfg)
    disc.refresh()
    return [(t.url, dict(t.labels.items_tuple())) for t in
            build_targets(disc.groups(), job, compile_steps(job.cfg.relabel_configs))]


def test_snmp_job_has_one_target_per_device_with_its_module_auth_and_labels() -> None:
    got = {labels["device"]: (url, labels) for url, labels in targets("snmp")}
    assert set(got) == {"edge1", "192.0.2.9"}
    url, labels = got["edge1"]
    parts = urlsplit(url)
    assert (parts.netloc, parts.path) == ("127.0.0.1:19116", "/snmp")
    assert parse_qs(parts.query) == {"target": ["192.0.2.1:11161"], "module": ["if_mib"], "auth": ["public_v1"]}
    assert labels == {"device": "edge1", "site": "lab", "instance": "192.0.2.1:11161", "job": "snmp"}
    shorthand = parse_qs(urlsplit(got["192.0.2.9"][0]).query)
    assert shorthand == {"target": ["192.0.2.9"], "module": ["if_mib,system"], "auth": ["public_v2"]}


def test_icmp_job_maps_each_pinged_host_to_its_device() -> None:
    [(url, labels)] = targets("icmp")
    assert url == "http://127.0.0.1:19115/metrics" and labels["job"] == "icmp"
    job = next(j for j in worker_config(CONFIG).jobs if j.cfg.job_name == "icmp")
    steps = compile_steps(job.cfg.metric_relabel_configs)
    series = {"__name__": "sotp_icmp_requests_total", "host": "192.0.2.1", "ip": "192.0.2.1"}
    assert process(dict(series), steps) == {**series, "device": "edge1", "site": "lab"}
    other = {"__name__": "sotp_icmp_requests_total", "host": "198.51.100.7", "ip": "198.51.100.7"}
    assert process(dict(other), steps) == {**other, "device": "core"}
    # a host no device names is left alone (e.g. the exporter's own series)
    stray = {"__name__": "sotp_icmp_requests_total", "host": "192.0.2.10"}
    assert process(dict(stray), steps) == stray


def test_backups_include_devices_with_backup() -> None:
    [device] = backup_config(CONFIG).devices
    assert (device.name, device.host, device.port, device.labels) == ("edge1", "192.0.2.1", 2222, {"site": "lab"})


def test_exporter_pings_every_device_address() -> None:
    from exporters.icmp.config import section

    assert section(CONFIG).continuous.targets == ["192.0.2.1", "198.51.100.7"]
