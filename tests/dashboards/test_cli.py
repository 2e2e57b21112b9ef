"""``sotp dashboard``: flag checks, the headless Streamlit process and its shutdown, and token auth."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboards import cli
from dashboards.ui import ENV_API, ENV_TOKEN_FILE
from tests.conftest import REPO, Proc, free_port, sotp_cmd, wait_for_port


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.configure_parser(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        ([], None),
        (["--api", "https://sotp.example:9201"], None),
        (["--api", "127.0.0.1:9201"], "use the API's base URL"),
        (["--api", "http://127.0.0.1:9201/api/v1"], "drop the /api/v1 suffix"),
        (["--token-file", "/nonexistent/token"], "file not readable"),
        (["--scrape-interval", "soon"], "--scrape-interval: invalid duration"),
    ],
    ids=["defaults", "https", "no-scheme", "api-suffix", "token-file", "scrape-interval"],
)
def test_check_args(argv: list[str], error: str | None) -> None:
    problem = cli.check_args(_args(*argv))
    if error is None:
        assert problem is None
    else:
        assert problem is not None and error in problem


def test_streamlit_runs_headless_on_loopback_without_tracebacks() -> None:
    argv = cli.streamlit_argv(_args("--port", "8600"))
    flags = dict(zip(argv[5::2], argv[6::2], strict=False))
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("dashboards/app.py")
    assert flags["--server.headless"] == "true"
    assert flags["--server.address"] == "127.0.0.1"
    assert flags["--server.port"] == "8600"
    assert flags["--browser.gatherUsageStats"] == "false"
    assert flags["--client.showErrorDetails"] == "none"


def test_bad_flag_exits_2_with_the_fix() -> None:
    out = subprocess.run(sotp_cmd("dashboard", "--api", "localhost:9201"), cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert "sotp dashboard: --api 'localhost:9201': use the API's base URL" in out.stderr


def test_serves_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = Proc(sotp_cmd("dashboard", "--api", "http://127.0.0.1:9", "--port", str(port)), tmp_path / "d.log")
    try:
        wait_for_port(port, timeout=60)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                    assert resp.read() == b"ok"
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert f"sotp dashboard: http://127.0.0.1:{port} reading http://127.0.0.1:9" in proc.output()
    finally:
        proc.stop(signal.SIGTERM)
    assert proc.popen.returncode == 0, proc.output()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)


def test_token_file_authenticates_against_sotp_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With auth on, the app reads with the token from --token-file and explains a 401 without it."""
    tokens = tmp_path / "tokens.json"
    created = subprocess.run(
        sotp_cmd("token", "--tokens-file", str(tokens), "create", "--name", "dashboard", "--scope", "read"),
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    )
    token = re.search(r"sotp_[0-9a-f]{12}_\S+", created.stdout + created.stderr)
    assert token, created
    token_file = tmp_path / "read-token"
    token_file.write_text(token.group(0) + "\n")
    config = tmp_path / "sotp.yml"
    config.write_text(f"auth:\n  enabled: true\n  tokens_file: {tokens}\n")
    port = free_port()
    serve = Proc(sotp_cmd("serve", "--config", str(config), "--listen", f"127.0.0.1:{port}",
                          "--storage", f"sqlite:///{tmp_path / 'db.sqlite'}"), tmp_path / "serve.log")
    try:
        wait_for_port(port, timeout=30)
        app = str(REPO / "dashboards" / "app.py")
        monkeypatch.setenv(ENV_API, f"http://127.0.0.1:{port}")
        monkeypatch.setenv(ENV_TOKEN_FILE, str(token_file))
        at = AppTest.from_file(app, default_timeout=60)
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert "No agents have pushed yet" in at.info[0].value
        monkeypatch.delenv(ENV_TOKEN_FILE)
        at = AppTest.from_file(app, default_timeout=60)
        at.run()
        assert not at.exception
        [error] = [e.value for e in at.error]
        assert "401" in error and "token" in error.lower(), error
    finally:
        serve.stop()


def test_app_imports_without_a_checkout_on_sys_path(tmp_path: Path) -> None:
    """``streamlit run dashboards/app.py`` from elsewhere finds the package (app.py adds its root)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import runpy, sys; sys.argv=['x']; import streamlit; "
            f"runpy.run_path({str(REPO / 'dashboards' / 'app.py')!r})")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert "ModuleNotFoundError" not in out.stderr, out.stderr[-2000:]
