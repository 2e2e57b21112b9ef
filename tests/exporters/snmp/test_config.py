"""snmp.yml loading: both upstream shapes, built-in modules, and bad files with the message they give."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from exporters.snmp.config import builtin_modules, load_config, parse_config
from sotp.errors import ConfigError
from tests.exporters.snmp.fakes import UPSTREAM_V021

#: snmp_exporter v0.30.1's generated snmp.yml (the oracle of the generator tests).
UPSTREAM_V030 = Path(__file__).resolve().parents[2] / "fixtures" / "snmp_exporter" / "v0.30.1" / "snmp.yml"


def test_loads_snmp_exporter_v021_if_mib_as_it_is() -> None:
    cfg = load_config(UPSTREAM_V021)
    m = cfg.modules["if_mib"]
    assert m.walk == ["1.3.6.1.2.1.2", "1.3.6.1.2.1.31.1.1"]
    assert m.get == ["1.3.6.1.2.1.1.3.0"]
    names = {x.name for x in m.metrics}
    assert {"ifHCInOctets", "ifType", "ifPhysAddress", "sysUpTime", "ifNumber"} <= names
    assert {lk.labelname for lk in m.metrics[2].lookups} == {"ifAlias", "ifDescr", "ifName"}
    assert m.inline_auth is None  # no auth in that file: public_v2 applies
    assert set(cfg.auths) == {"public_v1", "public_v2"}


def test_builtin_modules_present_with_same_if_mib_shape_as_upstream() -> None:
    mods = builtin_modules()
    assert {"if_mib", "ip_mib", "system", "host_resources", "ucd_memory", "ucd_system_stats", "ucd_la_table",
            "entity_sensor", "cisco_device", "juniper", "arista_sw", "ups_mib", "printer_mib"} == set(mods)
    upstream = load_config(UPSTREAM_V030).modules["if_mib"]
    ours = mods["if_mib"]
    assert [(m.name, m.oid, m.type) for m in ours.metrics] == [(m.name, m.oid, m.type) for m in upstream.metrics]
    assert ours.walk == upstream.walk and ours.get == upstream.get


V023 = """
auths:
  v3:
    version: 3
    username: u
    security_level: authPriv
    password: env:SOTP_TEST_SNMP_PASS
    auth_protocol: SHA
    priv_protocol: AES
    priv_password: privpass1
    context_name: ctx
modules:
  tiny:
    walk: [1.3.6.1.2.1.1]
    timeout: 1500ms
    retries: 1
    max_repetitions: 10
    metrics:
    - {name: sysUpTime, oid: 1.3.6.1.2.1.1.3, type: gauge}
exporter:
  backend: ezsnmp
  wrap_large_counters: false
"""


def test_v023_shape_with_auths_modules_and_exporter_section(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOTP_TEST_SNMP_PASS", "secretpass")
    path = tmp_path / "snmp.yml"
    path.write_text(V023)
    cfg = load_config(path)
    assert cfg.auths["v3"].password == "secretpass"
    assert cfg.auths["v3"].context_name == "ctx"
    assert {"public_v2", "v3"} <= set(cfg.auths)
    tiny = cfg.modules["tiny"]
    assert (tiny.timeout_s, tiny.retries, tiny.max_repetitions) == (1.5, 1, 10)
    assert cfg.exporter.backend == "ezsnmp" and cfg.exporter.wrap_large_counters is False
    assert "if_mib" in cfg.modules  # built-ins stay available


def test_v021_inline_auth_is_attached_to_the_module() -> None:
    cfg = parse_config(yaml.safe_load("""
m:
  version: 3
  auth: {username: u, security_level: authNoPriv, password: authpass1, auth_protocol: SHA}
  walk: [1.3.6.1.2.1.1]
  metrics: []
"""))
    auth = cfg.modules["m"].inline_auth
    assert auth is not None and (auth.version, auth.username, auth.auth_protocol) == (3, "u", "SHA")


BAD = [
    ("unknown-module-key", "m: {walk: [1.3], colour: red}", "m.colour: unknown key"),
    ("named-oid", "m: {walk: [ifTable]}", "is not a numeric OID"),
    ("bad-metric-type", "m: {metrics: [{name: x, oid: 1.3, type: Fancy}]}", "unknown metric type 'Fancy'"),
    ("bad-index-type", "m: {metrics: [{name: x, oid: 1.3, type: gauge, indexes: [{labelname: i, type: Odd}]}]}",
     "unknown index type 'Odd'"),
    ("lookup-of-unknown-label", "m: {metrics: [{name: x, oid: 1.3, type: gauge, lookups: "
     "[{labels: [nope], labelname: y, oid: 1.4}]}]}", "'nope' is neither an index"),
    ("bad-timeout", "m: {timeout: soon}", "invalid duration"),
    ("v3-without-user", "auths: {a: {version: 3}}", "username: required for version 3"),
    ("authpriv-without-priv-password", "auths: {a: {version: 3, username: u, security_level: authPriv, "
     "password: p12345678}}", "priv_password: required"),
    ("bad-auth-protocol", "auths: {a: {auth_protocol: SHA1}}", "auth_protocol: 'SHA1' is not one of"),
    ("bad-version", "auths: {a: {version: 4}}", "not an SNMP version"),
    ("bad-backend", "modules: {}\nexporter: {backend: easysnmp}", "'easysnmp' is not one of"),
    ("not-a-mapping", "- a\n- b", "expected a mapping"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_configs_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        parse_config(yaml.safe_load(text))
    assert message in str(info.value)


def test_missing_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set --config"):
        load_config(tmp_path / "absent.yml")
