"""One validator for sotp.yml (issue 23, point 3) and paths relative to the file / data directory (point 1).

``sotp check config`` and ``--check`` on each command report every section's problem with its key path;
long-running commands run the same check at start and exit 2 with the message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sotp.cli.check import checked_config, problems
from sotp.config import load_config
from sotp.errors import ConfigError
from tests.conftest import REPO

DEVICE = {"name": "r1", "host": "192.0.2.1", "device_type": "cisco_ios", "username": "u", "password": "env:P"}


def sotp(*args: str, cwd: Path = REPO, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "sotp", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


def write(tmp_path: Path, data: object, name: str = "sotp.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


# (config, the problem's text): each of these passed `sotp worker --check` before (the list first)
BAD = {
    "platform-typo": ({"backup": {"devices": [{**DEVICE, "device_type": "cisco_iso"}]}},
                      "backup.devices[0].device_type: 'cisco_iso' is unknown; use one of"),
    "backup-unknown-key": ({"backup": {"devices": [{**DEVICE, "hostname": "r1"}]}},
                           "backup.devices[0].hostname: unknown key"),
    "snmp-unknown-key": ({"snmp": {"tagrets": ["192.0.2.1"]}}, "snmp.tagrets: unknown key"),
    "backup-duration": ({"backup": {"interval": "1hour"}}, "backup.interval: invalid duration '1hour'"),
    "pushgateway-duration": ({"pushgateway": {"ttl": "soon"}}, "pushgateway.ttl: invalid duration 'soon'"),
    "server-duration": ({"server": {"retention": "x"}}, "server.retention: invalid duration 'x'"),
    "relabel-regex": ({"scrape_configs": [{"job_name": "j", "static_configs": [{"targets": ["h:1"]}],
                                           "relabel_configs": [{"source_labels": ["a"], "regex": "(",
                                                                "target_label": "b"}]}]},
                      "scrape_configs[0].relabel_configs[0].regex: invalid regular expression '('"),
    "auth-unknown-key": ({"auth": {"enable": True}}, "auth.enable: unknown key"),
    "icmp-unknown-key": ({"icmp": {"continous": {}}}, "icmp.continous: unknown key"),
    "device-snmp-module": ({"devices": [{"name": "e1", "address": "192.0.2.1", "snmp": {"module": "if_mibb"}}]},
                           "devices[0].snmp.module: 'if_mibb' is not a module of the built-in SNMP modules"),
    "device-snmp-auth": ({"devices": [{"name": "e1", "address": "192.0.2.1", "snmp": {"auth": "core_v3"}}]},
                         "devices[0].snmp.auth: 'core_v3' is not an auth of the built-in SNMP modules"),
    "default-snmp-module": ({"snmp": {"module": "if_mib,nope", "targets": ["192.0.2.1"]}},
                            "snmp.module: 'nope' is not a module"),
    "device-backup-platform": ({"devices": [{"name": "e1", "address": "192.0.2.1",
                                             "backup": {"device_type": "juniper", "username": "u",
                                                        "password": "env:P"}}]},
                               "devices[0].backup.device_type: 'juniper' is unknown"),
    "device-twice": ({"devices": [{"name": "e1", "address": "a", "icmp": True},
                                  {"name": "e1", "address": "b", "icmp": True}]},
                     "devices[1].name: 'e1' is listed twice"),
    "device-unused": ({"devices": [{"name": "e1", "address": "a"}]}, "devices[0]: the device has none of snmp"),
    "device-reserved-label": ({"devices": [{"name": "e1", "address": "a", "icmp": True, "labels": {"job": "x"}}]},
                              "devices[0].labels.job: set by SOTP itself"),
    "job-name-clash": ({"devices": [{"name": "e1", "address": "a", "icmp": True}],
                        "scrape_configs": [{"job_name": "icmp", "static_configs": [{"targets": ["h:1"]}]}]},
                       "scrape_configs[0].job_name: 'icmp' is the job derived from devices:"),
    "agent-section": ({"agent": {"interval": "15s"}}, "agent: no command reads this section"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_check_config_names_the_problem(case: str, tmp_path: Path) -> None:
    data, message = BAD[case]
    config = load_config(write(tmp_path, data))
    errors, _ = problems(config)
    assert any(message in e for e in errors), errors


def test_every_problem_is_listed_at_once_and_exit_code_is_2(tmp_path: Path) -> None:
    data = {**BAD["platform-typo"][0], **BAD["snmp-unknown-key"][0], **BAD["pushgateway-duration"][0]}
    path = write(tmp_path, data)
    r = sotp("check", "config", str(path))
    assert r.returncode == 2 and r.stdout == ""
    for _, message in (BAD["platform-typo"], BAD["snmp-unknown-key"], BAD["pushgateway-duration"]):
        assert message in r.stderr, r.stderr


def test_valid_config_is_reported_with_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A", "auth-pass")  # the SNMP config's secrets resolve, as the exporter needs them
    monkeypatch.setenv("B", "priv-pass")
    (tmp_path / "snmp.yml").write_text(yaml.safe_dump({"auths": {"core_v3": {
        "version": 3, "username": "mon", "security_level": "authPriv", "password": "env:A", "auth_protocol": "SHA",
        "priv_protocol": "AES", "priv_password": "env:B"}}}))
    write(tmp_path, {
        "snmp": {"config_file": "snmp.yml"},
        "devices": [{"name": "edge1", "address": "192.0.2.1", "snmp": {"auth": "core_v3"}, "icmp": True,
                     "backup": {"device_type": "cisco_ios", "username": "u", "password": "env:P"}}],
    })
    r = sotp("check", "config", "sotp.yml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "sotp.yml: configuration valid" in r.stdout
    assert f"storage sqlite://{tmp_path}/data/sotp.db" in r.stdout
    assert f"tokens file {tmp_path}/data/tokens.json" in r.stdout
    assert "device edge1: snmp, icmp, backup" in r.stdout
    assert "scrape jobs: snmp, icmp" in r.stdout


BAD_BACKUP = {"backup": {"devices": [{**DEVICE, "device_type": "cisco_iso"}]}}


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["up", "--no-dashboard"]], ids=["serve", "worker", "up"])
def test_long_running_commands_refuse_an_invalid_file_at_start(command: list[str], tmp_path: Path) -> None:
    path = write(tmp_path, BAD_BACKUP)
    r = sotp(*command, "--config", str(path), "--data-dir", str(tmp_path / "d"), timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "backup.devices[0].device_type: 'cisco_iso' is unknown" in r.stderr
    assert "listening" not in r.stdout + r.stderr and "running" not in r.stdout


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["up"], ["backup", "run"]],
                         ids=["serve", "worker", "up", "backup"])
def test_check_flag_on_each_command(command: list[str], tmp_path: Path) -> None:
    bad = write(tmp_path, BAD_BACKUP, "bad.yml")
    good = write(tmp_path, {"backup": {"devices": [DEVICE]}}, "good.yml")
    r = sotp(*command, "--check", "--config", str(bad))
    assert r.returncode == 2 and "'cisco_iso' is unknown" in r.stderr
    r = sotp(*command, "--check", "--config", str(good))
    assert r.returncode == 0 and "configuration valid" in r.stdout, r.stderr


def test_worker_reload_runs_the_whole_check(tmp_path: Path) -> None:
    path = write(tmp_path, {"backup": {"devices": [DEVICE]}})
    checked_config(path)
    path.write_text(yaml.safe_dump(BAD_BACKUP))
    with pytest.raises(ConfigError, match="'cisco_iso' is unknown"):
        from worker.cli import Worker

        Worker.load(str(path))


# ------------------------------------------------------------------------------------------------ paths


def test_relative_paths_are_relative_to_the_file_and_defaults_to_the_data_dir(tmp_path: Path) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    path = write(conf, {
        "scrape_configs": [{"job_name": "j", "file_sd_configs": [{"files": ["targets/*.yml"]}],
                            "authorization": {"credentials_file": "token"},
                            "tls_config": {"ca_file": "/abs/ca.pem"}}],
        "backup": {"devices": [{**DEVICE, "password": "file:secrets/r1", "key_file": "keys/id"}]},
        "snmp": {"config_file": "snmp.yml"},
    })
    config = load_config(path)
    job = config.scrape_configs[0]
    assert job["file_sd_configs"][0]["files"] == [f"{conf}/targets/*.yml"]
    assert job["authorization"]["credentials_file"] == f"{conf}/token"
    assert job["tls_config"]["ca_file"] == "/abs/ca.pem"
    device = config.backup["devices"][0]
    assert device["password"] == f"file:{conf}/secrets/r1" and device["key_file"] == f"{conf}/keys/id"
    assert device["username"] == "u"  # not a path: untouched
    assert config.snmp["config_file"] == f"{conf}/snmp.yml"
    assert config.server.storage == f"sqlite://{conf}/data/sotp.db"
    assert config.auth["tokens_file"] == f"{conf}/data/tokens.json"
    other = load_config(path, tmp_path / "d")
    assert other.server.storage == f"sqlite://{tmp_path}/d/sotp.db"
    assert other.auth["tokens_file"] == f"{tmp_path}/d/tokens.json"
    explicit = load_config(write(conf, {"server": {"storage": "sqlite:///./db/x.db"},
                                        "auth": {"tokens_file": "t.json"}}, "x.yml"), tmp_path / "d")
    assert explicit.server.storage == f"sqlite://{conf}/db/x.db"
    assert explicit.auth["tokens_file"] == f"{conf}/t.json"


def test_token_commands_find_the_same_file_from_any_directory_and_option_order(tmp_path: Path) -> None:
    conf = tmp_path / "site"
    conf.mkdir()
    path = write(conf, {"auth": {"enabled": True}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # options after the action (failed before) and before it
    r = sotp("token", "create", "--name", "a", "--scope", "read", "--config", str(path), cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert f"in {conf}/data/tokens.json" in r.stderr
    r = sotp("token", "--config", str(path), "create", "--name", "b", "--scope", "write", cwd=REPO)
    assert r.returncode == 0, r.stderr
    r = sotp("token", "list", "--json", "--config", "site/sotp.yml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [t["name"] for t in json.loads(r.stdout)] == ["a", "b"]
    assert not (elsewhere / "data").exists() and not (tmp_path / "data").exists()
    r = sotp("token", "list", "--json", "--data-dir", str(conf / "data"), cwd=elsewhere)
    assert [t["name"] for t in json.loads(r.stdout)] == ["a", "b"]
