"""``make agent-zipapp`` builds one file that runs with the system's python3 alone (``-I -S``: no venv, no
site-packages): it pushes this host's metrics, textfile metrics included, and installs itself as a service."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sotp.codec.remote_write import decode_write_request
from tests.conftest import REPO, Proc, free_port, require_binary

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zipapp") / "sotp-agent.pyz"
    r = subprocess.run(["make", "-s", "agent-zipapp", f"ZIPAPP={out}", f"PY={sys.executable}"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def python3() -> str:
    """The system interpreter, as a server has it (3.11+), not this venv's."""
    path = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else require_binary("python3")
    r = subprocess.run([path, "-c", "import sys; print(sys.version_info >= (3, 11), sys.executable)"],
                       capture_output=True, text=True)
    new_enough, executable = r.stdout.split()
    if new_enough != "True":
        pytest.skip(f"{path} is older than 3.11")
    return executable


class Receiver:
    """A remote-write sink that decodes every body (with SOTP's server-side decoder) and keeps the names."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.labels: list[dict[str, str]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                req = decode_write_request(self.rfile.read(int(self.headers["Content-Length"])))
                for s in req.series:
                    outer.names.add(s.labels.name)
                    if s.labels.name == "backup_last_success_timestamp_seconds":
                        outer.labels.append(dict(s.labels.items_tuple()))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    yield rx
    rx.server.shutdown()
    rx.server.server_close()


def test_zipapp_pushes_host_and_textfile_metrics(pyz: Path, python3: str, receiver: Receiver, tmp_path: Path) -> None:
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    (textfiles / "backup.prom").write_text(
        "# HELP backup_last_success_timestamp_seconds When the nightly backup last succeeded.\n"
        "# TYPE backup_last_success_timestamp_seconds gauge\n"
        'backup_last_success_timestamp_seconds{target="db"} 1.7e+09\n')
    agent = Proc([python3, "-I", "-S", str(pyz), "--url", f"http://127.0.0.1:{receiver.port}/api/v1/write",
                  "--interval", "500ms", "--buffer-dir", str(tmp_path / "buf"), "--instance", "zip1",
                  f"--collector.textfile.directory={textfiles}"], tmp_path / "agent.log")
    want = {"node_cpu_seconds_total", "node_memory_MemTotal_bytes", "node_netstat_Tcp_InSegs",
            "backup_last_success_timestamp_seconds", "node_textfile_mtime_seconds", "sotp_agent_collections_total"}
    try:
        deadline = time.monotonic() + 60
        while not want <= receiver.names and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        agent.stop()
    assert want <= receiver.names, (sorted(want - receiver.names), agent.log.read_text()[-2000:])
    assert receiver.labels[0] == {"__name__": "backup_last_success_timestamp_seconds", "instance": "zip1",
                                  "job": "node", "target": "db"}


def test_zipapp_runs_the_host_exporter(pyz: Path, python3: str, tmp_path: Path) -> None:
    import urllib.request

    port = free_port()
    exporter = Proc([python3, "-I", "-S", str(pyz), "exporter", "host", "--listen", f"127.0.0.1:{port}"],
                    tmp_path / "exporter.log")
    try:
        deadline = time.monotonic() + 30
        body = ""
        while "node_load1" not in body and time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                time.sleep(0.1)
    finally:
        exporter.stop()
    assert "node_load1" in body and "node_scrape_collector_success" in body


def test_zipapp_installs_itself_as_a_service(pyz: Path, python3: str, tmp_path: Path) -> None:
    for name in ("systemctl", "systemd-analyze"):
        if shutil.which(name) is None:
            pytest.skip(f"{name} not installed (apt-get install systemd)")
    root = tmp_path / "root"
    (tmp_path / "token").write_text("s3cret\n")
    r = subprocess.run([python3, "-I", "-S", str(pyz), "install", "--url", "https://core.example/api/v1/write",
                        "--token-file", str(tmp_path / "token"), "--root", str(root)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    copy = root / "usr/local/lib/sotp/sotp-agent.pyz"
    assert copy.read_bytes() == pyz.read_bytes() and copy.stat().st_mode & 0o777 == 0o644
    unit = root / "etc/systemd/system/sotp-agent.service"
    exec_start = next(ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart="))
    assert exec_start.startswith(f"ExecStart={python3} /usr/local/lib/sotp/sotp-agent.pyz --url ${{SOTP_URL}}")
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (verify.stdout + verify.stderr).strip() == ""
    r = subprocess.run([python3, "-I", "-S", str(pyz), "uninstall", "--root", str(root)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and not copy.exists() and not unit.exists()
