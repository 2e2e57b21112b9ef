"""icmp.yml loading: blackbox-style modules, SOTP additions, and errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from exporters.icmp import config
from exporters.icmp.probe import probe_timeout
from sotp.errors import ConfigError


def load(tmp_path: Path, data: Any) -> config.IcmpConfig:
    p = tmp_path / "icmp.yml"
    p.write_text(yaml.safe_dump(data))
    return config.load(p)


def test_defaults_without_file() -> None:
    cfg = config.load(None)
    assert list(cfg.modules) == ["icmp"]
    assert cfg.modules["icmp"].icmp.preferred_ip_protocol == "ip6"  # blackbox's default
    assert cfg.continuous.targets == [] and cfg.socket == "auto"
    assert cfg.continuous.buckets[0] == 5e-05 and len(cfg.continuous.buckets) == 20
    assert cfg.continuous.buckets[-1] == pytest.approx(26.2144)


def test_blackbox_style_module_loads(tmp_path: Path) -> None:
    cfg = load(tmp_path, {
        "modules": {
            "icmp_v4": {"prober": "icmp", "timeout": "5s", "icmp": {
                "preferred_ip_protocol": "ip4", "ip_protocol_fallback": False, "payload_size": 100,
                "dont_fragment": True, "ttl": 10, "source_ip_address": "127.0.0.1", "count": 3,
                "interval": "200ms"}},
        },
        "continuous": {"targets": ["localhost", "::1"], "interval": "500ms", "timeout": 0.4},
        "socket": "raw",
        "max_in_flight": 64,
    })
    m = cfg.modules["icmp_v4"]
    assert m.timeout_s == 5.0 and m.icmp.interval_s == 0.2 and m.icmp.count == 3 and m.icmp.ttl == 10
    assert cfg.continuous.interval_s == 0.5 and cfg.continuous.timeout_s == 0.4
    assert cfg.socket == "raw" and cfg.max_in_flight == 64


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"modules": {"m": {"prober": "http"}}}, "modules.m.prober: 'http' is not supported"),
        ({"modules": {"m": {"icmp": {"count": 0}}}}, "modules.m.icmp.count: 0 is out of range"),
        ({"modules": {"m": {"icmp": {"ttl": 300}}}}, "modules.m.icmp.ttl: 300 is out of range"),
        ({"modules": {"m": {"icmp": {"payload_size": -1}}}}, "payload_size: -1 is out of range"),
        ({"modules": {"m": {"icmp": {"preferred_ip_protocol": "ip5"}}}}, "preferred_ip_protocol: 'ip5'"),
        ({"modules": {"m": {"icmp": {"source_ip_address": "nope"}}}}, "source_ip_address: 'nope'"),
        ({"modules": {"m": {"icmp": {"bogus": 1}}}}, "modules.m.icmp.bogus: unknown key"),
        ({"modules": {"m": {"timeout": "5 parsecs"}}}, "invalid duration"),
        ({"continuous": {"targets": ["a", "a"]}}, "continuous.targets: lists a host twice"),
        ({"continuous": {"interval": "0s"}}, "continuous.interval: must be positive"),
        ({"continuous": {"buckets": [1, 0.5]}}, "continuous.buckets: must be a non-empty, strictly increasing"),
        ({"socket": "magic"}, "socket: 'magic' is not one of"),
        ({"max_in_flight": 0}, "max_in_flight: 0 is out of range"),
        ({"scrape_configs": []}, "scrape_configs: unknown key"),
    ],
    ids=["prober", "count", "ttl", "payload", "protocol", "source", "unknown-key", "duration", "dup-target",
         "interval", "buckets", "socket", "in-flight", "foreign-section"],
)
def test_bad_configs_name_the_key(tmp_path: Path, data: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, data)
    assert fragment in str(err.value)


def test_icmp_section_of_sotp_yml(tmp_path: Path) -> None:
    cfg = load(tmp_path, {"server": {"listen": "127.0.0.1:9201"},
                          "icmp": {"continuous": {"targets": ["localhost"]}, "max_in_flight": 10}})
    assert cfg.continuous.targets == ["localhost"] and cfg.max_in_flight == 10
    with pytest.raises(ConfigError) as err:
        load(tmp_path, {"icmp": {"modules": {"m": {"icmp": {"count": 0}}}}})
    assert "icmp.modules.m.icmp.count: 0 is out of range" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load(tmp_path, {"icmp": {}, "bogus_section": 1})
    assert "bogus_section: unknown key" in str(err.value)


def test_unreadable_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read icmp config file"):
        config.load(tmp_path / "absent.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("modules: [unclosed")
    with pytest.raises(ConfigError, match="cannot parse icmp config file"):
        config.load(bad)


@pytest.mark.parametrize(
    ("header", "module_timeout", "want"),
    [
        (None, "0s", 119.5),  # no header: blackbox assumes 120 s
        ("10", "0s", 9.5),  # header minus the offset
        ("10", "5s", 5.0),  # a shorter module timeout wins
        ("10", "20s", 9.5),  # a longer one does not
        ("0.3", "0s", 0.0),  # header below the offset, no module timeout: -0.2 -> module's 0
        ("0.3", "2s", 2.0),  # header below the offset: the module's timeout is used
        ("0", "0s", 119.5),  # a zero header counts as absent
        ("nan", "0s", 119.5),  # issue 17: a NaN timeout would never fire; treated as absent
        ("+Inf", "5s", 5.0),  # so is infinity (the module's own timeout still applies)
    ],
    ids=["none", "header", "module-shorter", "module-longer", "negative-no-module", "negative", "zero", "nan", "inf"],
)
def test_probe_timeout_follows_blackbox(header: str | None, module_timeout: str, want: float) -> None:
    mod = config.Module(timeout=module_timeout)
    assert probe_timeout(header, mod, 0.5) == pytest.approx(want)


def test_probe_timeout_rejects_garbage_header() -> None:
    with pytest.raises(ValueError):
        probe_timeout("soon", config.Module(), 0.5)
