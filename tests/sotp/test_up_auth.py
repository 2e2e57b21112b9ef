"""``sotp up`` with ``auth: {enabled: true}``: its own agent, self-scrape and dashboard get internal tokens,
so the stack works unchanged; tokens are reused across restarts; Ctrl-C stops quietly (issue 23, points 1, 8).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, Proc, sotp_cmd, sotp_up_ports, wait_for_port

pytestmark = pytest.mark.integration


def query(port: int, expr: str, token: str | None) -> list[dict]:  # type: ignore[type-arg]
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        result: list[dict] = json.loads(r.read())["data"]["result"]  # type: ignore[type-arg]
        return result


def wait_for(port: int, expr: str, token: str, up: Proc, seconds: float = 90) -> list[dict]:  # type: ignore[type-arg]
    deadline = time.monotonic() + seconds
    while True:
        found = query(port, expr, token)
        if found:
            return found
        assert time.monotonic() < deadline, f"{expr} stayed empty\n{up.output()[-3000:]}"
        time.sleep(1)


def start_up(tmp_path: Path, ports: tuple[int, int, int], name: str) -> Proc:
    serve, base, dash = ports
    return Proc(sotp_cmd("up", "--config", str(tmp_path / "sotp.yml"), "--port", str(serve), "--port-base",
                         str(base), "--dashboard-port", str(dash), "--interval", "2s"), tmp_path / f"{name}.log",
                new_session=True)


def active_tokens(tokens_file: Path) -> list[dict]:  # type: ignore[type-arg]
    return [t for t in json.loads(tokens_file.read_text())["tokens"] if t.get("revoked") is None]


def test_sotp_up_with_auth_on_works_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sotp.yml").write_text("auth: {enabled: true}\n")
    ports = sotp_up_ports()
    serve, _, dash = ports
    data = tmp_path / "data"  # the default data directory: beside the config file
    up = start_up(tmp_path, ports, "up1")
    try:
        wait_for_port(serve, timeout=60)
        # without a token: refused, so auth really is on
        with pytest.raises(urllib.error.HTTPError) as refused:
            query(serve, "up", None)
        assert refused.value.code == 401
        refused.value.close()
        reader = (data / "internal" / "dashboard.token").read_text().strip()
        assert wait_for(serve, 'node_load1{job="node"}', reader, up)  # the agent's pushes are accepted
        assert wait_for(serve, 'up{job="sotp"} == 1', reader, up)  # the self-scrape authenticates
        text = up.output()
        assert f"authentication is ON: tokens in {data / 'tokens.json'}" in text
        assert f"configuration {data / 'sotp-up.yml'} (generated from {tmp_path / 'sotp.yml'})" in text
        for role in ("agent", "scrape", "dashboard"):
            assert (data / "internal" / f"{role}.token").stat().st_mode & 0o077 == 0
        # The dashboard child reads with its token: the Servers page shows this machine, no API error.
        import psutil
        from streamlit.testing.v1 import AppTest

        from dashboards.ui import ENV_API, ENV_TOKEN_FILE

        dash_argv = next(" ".join(p.cmdline()) for p in psutil.Process(up.popen.pid).children()
                         if "dashboard" in p.cmdline())
        assert f"--token-file {data / 'internal' / 'dashboard.token'}" in dash_argv
        monkeypatch.setenv(ENV_API, f"http://127.0.0.1:{serve}")
        monkeypatch.setenv(ENV_TOKEN_FILE, str(data / "internal" / "dashboard.token"))
        deadline = time.monotonic() + 60
        while True:  # rates need a few pushes before the host's row appears
            at = AppTest.from_file(str(REPO / "dashboards" / "app.py"), default_timeout=60)
            at.run()
            assert not [e.value for e in at.error], [e.value for e in at.error]
            if len(at.dataframe) and socket.gethostname() in list(at.dataframe[0].value["Host"]):
                break
            assert time.monotonic() < deadline, "the dashboard never showed this machine"
            time.sleep(2)
        wait_for_port(dash, timeout=60)
        # The agent started after serve answered: no refused connection at start (the race of point 8).
        agent_log = (data / "logs" / "agent.log").read_text()
        assert "Connection refused" not in agent_log and "401" not in agent_log, agent_log
        tokens_before = {t["name"]: t["id"] for t in active_tokens(data / "tokens.json")}
        assert set(tokens_before) == {"sotp-up-agent", "sotp-up-scrape", "sotp-up-dashboard"}
        # Ctrl-C in a terminal signals the foreground process group: sotp up alone (children have their
        # own session), and it stops them without restart warnings.
        os.killpg(up.popen.pid, signal.SIGINT)
        up.popen.wait(30)
        out = up.output()
        assert up.popen.returncode == 0 and out.rstrip().endswith("sotp up: stopped"), out[-2000:]
        assert "exited with" not in out and "restarting" not in out, out[-2000:]
    finally:
        up.stop(signal.SIGTERM)
    # A second start reuses the same internal tokens (no new records) and works again.
    restarted = time.time()
    up2 = start_up(tmp_path, ports, "up2")
    try:
        wait_for_port(serve, timeout=60)
        assert wait_for(serve, f'timestamp(up{{job="sotp"}} == 1) > {restarted}', reader, up2)
        tokens_after = {t["name"]: t["id"] for t in active_tokens(data / "tokens.json")}
        assert tokens_after == tokens_before
    finally:
        up2.stop(signal.SIGTERM)


def test_a_token_created_while_running_turns_auth_on_and_the_stack_follows(tmp_path: Path) -> None:
    """With auth unset on loopback, the first token makes sotp serve require tokens (issue 17's rule); sotp up
    notices, gives its own parts their tokens and keeps the data flowing."""
    (tmp_path / "sotp.yml").write_text("server: {retention: 1d}\n")
    ports = sotp_up_ports()
    serve = ports[0]
    up = start_up(tmp_path, ports, "up")
    try:
        wait_for_port(serve, timeout=60)
        assert wait_for(serve, 'up{job="sotp"} == 1', "", up)
        assert "authentication is off" in up.output()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        import subprocess

        made = subprocess.run(sotp_cmd("token", "create", "--name", "me", "--scope", "read", "--config",
                                       str(tmp_path / "sotp.yml")), capture_output=True, text=True, env=env,
                              timeout=60, check=True)
        token = made.stdout.strip()
        created = time.time()
        with pytest.raises(urllib.error.HTTPError) as refused:
            query(serve, "up", None)
        assert refused.value.code == 401
        refused.value.close()
        assert wait_for(serve, f'timestamp(up{{job="sotp"}} == 1) > {created}', token, up)
        assert wait_for(serve, f'timestamp(node_load1{{job="node"}}) > {created}', token, up)
        assert "authentication is now ON" in up.output()
    finally:
        up.stop(signal.SIGTERM)
