"""``sotp agent`` refuses bad settings up front, with a message naming the flag."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, sotp_cmd


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--url", "core:9201/api/v1/write"], "--url"),
        (["--url", "http://127.0.0.1:9/w", "--label", "bad-name=x"], "--label"),
        (["--url", "http://127.0.0.1:9/w", "--label", "__reserved=x"], "--label"),
        (["--url", "http://127.0.0.1:9/w", "--interval", "often"], "--interval"),
        (["--url", "http://127.0.0.1:9/w", "--token-file", "/nonexistent/token"], "--token-file"),
        (["--url", "http://127.0.0.1:9/w", "--collectors", "cpu,gpu"], "--collectors"),
        (["--url", "https://127.0.0.1:9/w", "--ca-file", "/nonexistent/ca.pem"], "--ca-file"),
    ],
    ids=["url-without-scheme", "label-name", "reserved-label", "interval", "token-file", "collector", "ca-file"],
)
def test_bad_settings_exit_2(tmp_path: Path, flags: list[str], message: str) -> None:
    r = subprocess.run(sotp_cmd("agent", *flags, "--buffer-dir", str(tmp_path / "buf")), cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr


def test_exporter_rejects_unknown_collector() -> None:
    r = subprocess.run(sotp_cmd("exporter", "host", "--collectors", "cpu,gpu"), cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "gpu" in r.stderr and "--collectors" in r.stderr


def test_buffer_defaults_to_systemd_state_directory(tmp_path: Path) -> None:
    import signal
    import time

    from tests.conftest import Proc, free_port

    # nothing listens: the first batch goes to disk, in $STATE_DIRECTORY/buffer as the unit expects
    p = Proc(sotp_cmd("agent", "--url", f"http://127.0.0.1:{free_port()}/api/v1/write", "--interval", "200ms"),
             tmp_path / "agent.log", env={"STATE_DIRECTORY": str(tmp_path / "state")})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not list((tmp_path / "state" / "buffer").glob("*.rw")):
        time.sleep(0.1)
    p.stop(signal.SIGTERM)
    assert list((tmp_path / "state" / "buffer").glob("*.rw")), p.log.read_text()
