"""The README's "first hour", replayed step by step: its sotp.yml and its commands, as written there, with
``sotp up`` alone on a real snmpd and a real OpenSSH sshd, authentication on (issue 23's "done when").

The only changes to the README's text are the test's own ports and paths: snmpd's and sshd's ports, the SSH
user (the one the test sshd accepts), the key, ``/srv/lab`` (a temporary directory) and sotp up's ports.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, Proc, require_binary, sotp_cmd, sotp_up_ports, sshd_server, start_snmpd, wait_for_port

pytestmark = pytest.mark.integration

ROUTER_CONF = "hostname lab-router\ninterface eth0\n  description uplink\n  mtu 1500\n"


def readme_block(marker: str) -> str:
    """The fenced block that follows ``<!-- first-hour: <marker> -->`` in the README."""
    text = (REPO / "README.md").read_text()
    m = re.search(rf"<!-- first-hour: {re.escape(marker)} -->\n```\w*\n(.*?)```", text, re.S)
    assert m, f"README.md has no first-hour block {marker!r}"
    return m.group(1)


def until(what: str, check: Callable[[], str | None], seconds: float = 120) -> str:
    """Retry ``check`` (returns a non-empty result when done) until the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not done after {seconds:g}s"
        time.sleep(2)


def test_readme_first_hour(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_binary("curl")
    site, lab, peers = tmp_path / "site", tmp_path / "srv-lab", tmp_path / "peers"
    for d in (site, lab, peers):
        d.mkdir()
    (lab / "router.conf").write_text(ROUTER_CONF)
    snmpd, snmp_port = start_snmpd(peers)
    serve, base, dash = sotp_up_ports()
    user = os.environ.get("USER") or "root"
    with sshd_server(peers) as (ssh_port, key):
        # Step 1: the README's sotp.yml, with this machine's ports and paths.
        config = readme_block("sotp.yml")
        for old, new in (("127.0.0.1:11161", f"127.0.0.1:{snmp_port}"), ("port: 22 ", f"port: {ssh_port} "),
                         ("username: backup", f"username: {user}"), ("/srv/lab", str(lab))):
            assert old in config, f"the README's sotp.yml no longer has {old!r}"
            config = config.replace(old, new)
        (site / "sotp.yml").write_text(config)
        assert yaml.safe_load(config)["auth"] == {"enabled": True}
        (site / "keys").mkdir()
        (site / "keys" / "lab-router").write_bytes(key.read_bytes())
        (site / "keys" / "lab-router").chmod(0o600)

        env = {**os.environ, "PYTHONPATH": str(REPO), "SOTP_PY": sys.executable}

        def shell(line: str) -> subprocess.CompletedProcess[str]:
            """A README command line, run by bash in the site directory with `sotp` being this checkout."""
            line = line.replace("127.0.0.1:9201", f"127.0.0.1:{serve}")
            script = f'sotp() {{ "$SOTP_PY" -m sotp "$@"; }}\n{line}'
            return subprocess.run(["bash", "-c", script], cwd=site, env=env, capture_output=True, text=True,
                                  timeout=120)

        up: Proc | None = None
        try:
            for line in readme_block("commands").splitlines():
                if line.startswith("sotp check config"):
                    r = shell(line)
                    assert r.returncode == 0, r.stderr
                    assert "configuration valid" in r.stdout and "device lab-router: snmp, icmp, backup" in r.stdout
                elif line.startswith("sotp up"):
                    argv = shlex.split(line.rstrip("& "))[1:]
                    up = Proc(sotp_cmd(*argv, "--port", str(serve), "--port-base", str(base), "--dashboard-port",
                                       str(dash)), tmp_path / "up.log", cwd=site, new_session=True)
                    wait_for_port(serve, timeout=90)
                    banner = until("the banner", lambda p=up: "sotp up: running" in p.output() and p.output())
                    assert f"authentication is ON: tokens in {site / 'data' / 'tokens.json'}" in banner
                    assert "device lab-router" in banner and "snmp, icmp, backup" in banner
                elif line.startswith("sotp token create"):
                    r = shell(line)
                    assert r.returncode == 0, r.stderr
                    assert f"in {site / 'data' / 'tokens.json'}" in r.stderr
                elif line.startswith("curl"):
                    def jobs(line: str = line) -> str | None:
                        r = shell(line)
                        assert r.returncode == 0 and '"status":"success"' in r.stdout, r.stdout + r.stderr
                        names = {s["metric"]["job"] for s in json.loads(r.stdout)["data"]["result"]}
                        return ",".join(sorted(names)) if {"snmp", "icmp", "sotp-backup"} <= names else None

                    # the device's SNMP, ping and backup series, joined by its device label
                    assert until("series of lab-router from all three sources", jobs) == "icmp,snmp,sotp-backup"
                elif line.startswith("sotp backup list"):
                    # the worker backs the device up at start
                    listed = until("the worker's first backup", lambda line=line: shell(line).stdout)
                    assert listed.startswith("lab-router\tversion 1\t")
                elif line.startswith("sotp backup run"):
                    # a change on the device's last line, then a round now
                    (lab / "router.conf").write_text(ROUTER_CONF.replace("mtu 1500", "mtu 9000"))
                    r = shell(line)
                    assert r.returncode == 0 and "lab-router: ok" in r.stdout and "new version 2" in r.stdout, r
                elif line.startswith("sotp backup diff"):
                    r = shell(line)
                    assert r.returncode == 0, r.stderr
                    body = r.stdout.splitlines()
                    assert "-  mtu 1500" in body and "+  mtu 9000" in body, r.stdout
                    assert "paramiko" not in r.stderr
                else:
                    pytest.fail(f"the test does not know how to replay the README line {line!r}")
            assert up is not None
            # Step 3: the Network page shows one row for the device, from all three sources, with its token.
            from streamlit.testing.v1 import AppTest

            from dashboards.ui import ENV_API, ENV_TOKEN_FILE

            monkeypatch.setenv(ENV_API, f"http://127.0.0.1:{serve}")
            monkeypatch.setenv(ENV_TOKEN_FILE, str(site / "data" / "internal" / "dashboard.token"))

            def network_row() -> str | None:
                at = AppTest.from_file(str(REPO / "dashboards" / "app.py"), default_timeout=60)
                at.run()
                at.switch_page("views/network.py").run()
                assert not at.exception and not at.error, [e.value for e in at.error]
                if not len(at.dataframe):
                    return None
                table = at.dataframe[0].value
                assert list(table["Device"]) == ["lab-router"], table  # one device, one row, from the start
                row = table.iloc[0]
                # every source has arrived: interfaces (SNMP), reachability (ping) and the backup
                done = (str(row["Interfaces up"]) and row["Reachability"].startswith("● reachable")
                        and row["Last backup"].startswith("● ok"))
                return "one row" if done else None

            until("the Network page's one row for lab-router", network_row)
            # every series of the device carries its labels
            token = (site / "me.token").read_text().strip()
            url = f"http://127.0.0.1:{serve}/api/v1/query?" + urllib.parse.urlencode(
                {"query": 'count by (job) ({device="lab-router", site="lab"})'})
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                jobs = {s["metric"]["job"] for s in json.loads(resp.read())["data"]["result"]}
            assert {"snmp", "icmp", "sotp-backup"} <= jobs
        finally:
            if up is not None:
                os.killpg(up.popen.pid, signal.SIGINT)  # Ctrl-C, as in a terminal
                up.popen.wait(30)
                up.stop()
            snmpd.stop()
