"""``sotp agent install|uninstall`` against a fake root: the files, their modes, idempotence, the unit
checked by ``systemd-analyze verify``, and ``systemctl --root`` enabling it (no systemd needs to run)."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import configure_parser
from agent.systemd import render
from tests.conftest import REPO, sotp_cmd

UNIT = Path("etc/systemd/system/sotp-agent.service")
ENV = Path("etc/sotp/agent.env")
TOKEN = Path("etc/sotp/agent.token")
WANTS = Path("etc/systemd/system/multi-user.target.wants/sotp-agent.service")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        # a tool, not a service: a machine without systemd cannot run this check, even under CI
        pytest.skip(f"{name} not installed (apt-get install systemd)")
    return path


def sotp(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(sotp_cmd(*argv), cwd=REPO, capture_output=True, text=True, timeout=120)


def install(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    tool("systemctl")
    return sotp("agent", "install", "--url", "http://core.example:9201/api/v1/write", "--root", str(root), *extra)


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "token.txt"
    path.write_text("s3cret\n")
    return path


def test_install_writes_the_unit_env_and_token(tmp_path: Path, token: Path) -> None:
    root = tmp_path / "root"
    r = install(root, "--token-file", str(token), "--agent-args", "--label env=prod --collector.textfile.directory=/x")
    assert r.returncode == 0, r.stderr
    assert (root / TOKEN).read_text() == "s3cret\n" and (root / TOKEN).stat().st_mode & 0o777 == 0o600
    assert (root / ENV).read_text().splitlines()[1:] == [
        "SOTP_URL=http://core.example:9201/api/v1/write", "SOTP_INTERVAL=15s",
        "SOTP_AGENT_ARGS=--label env=prod --collector.textfile.directory=/x"]
    assert (root / UNIT).read_text() == render(f"{sys.executable} -m sotp agent")
    assert (root / WANTS).is_symlink() and str((root / WANTS).readlink()) == "/" + str(UNIT)
    enabled = subprocess.run([tool("systemctl"), f"--root={root}", "is-enabled", "sotp-agent.service"],
                             capture_output=True, text=True)
    assert enabled.stdout.strip() == "enabled"


def test_installed_unit_verifies_and_makes_a_valid_agent_command_line(tmp_path: Path, token: Path) -> None:
    root = tmp_path / "root"
    r = install(root, "--token-file", str(token), "--interval", "30s", "--agent-args", "--label dc=par1")
    assert r.returncode == 0, r.stderr
    verify = subprocess.run([tool("systemd-analyze"), "verify", str(root / UNIT)], capture_output=True, text=True,
                            timeout=60, cwd=root)
    assert (verify.stdout + verify.stderr).strip() == "" and verify.returncode == 0
    env = dict(line.split("=", 1) for line in (root / ENV).read_text().splitlines() if not line.startswith("#"))
    exec_start = next(ln for ln in (root / UNIT).read_text().splitlines() if ln.startswith("ExecStart="))
    argv: list[str] = []
    for word in exec_start.removeprefix("ExecStart=").split():  # systemd: ${X} one word, $X split at blanks
        if word.startswith("${"):
            argv.append(env[word[2:-1]])
        elif word.startswith("$"):
            argv += env[word[1:]].split()
        else:
            argv.append(word.replace("%d", "/run/credentials/sotp-agent.service"))
    assert argv[:4] == [sys.executable, "-m", "sotp", "agent"]
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(argv[4:])
    assert (args.url, args.interval, args.label) == ("http://core.example:9201/api/v1/write", "30s", ["dc=par1"])
    assert args.token_file == "/run/credentials/sotp-agent.service/token"


def test_install_is_idempotent_and_rewrites_only_what_changed(tmp_path: Path, token: Path) -> None:
    root = tmp_path / "root"
    assert install(root, "--token-file", str(token)).returncode == 0
    stamps = {p: (root / p).stat().st_mtime_ns for p in (UNIT, ENV, TOKEN)}
    again = install(root, "--token-file", str(token))
    assert again.returncode == 0 and "nothing changed" in again.stdout
    assert {p: (root / p).stat().st_mtime_ns for p in (UNIT, ENV, TOKEN)} == stamps
    changed = install(root, "--token-file", str(token), "--interval", "1m")
    assert changed.returncode == 0 and "/etc/sotp/agent.env written" in changed.stdout
    assert "sotp-agent.service written" not in changed.stdout
    assert (root / UNIT).stat().st_mtime_ns == stamps[UNIT]


def test_without_a_token_the_unit_loads_no_credential(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert install(root).returncode == 0
    unit = (root / UNIT).read_text()
    assert "LoadCredential" not in unit and "--token-file" not in unit and not (root / TOKEN).exists()
    verify = subprocess.run([tool("systemd-analyze"), "verify", str(root / UNIT)], capture_output=True, text=True,
                            timeout=60, cwd=root)
    assert (verify.stdout + verify.stderr).strip() == ""


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--agent-args=--no-such-flag"], "--agent-args"),
     (["--agent-args", "--label 'env=two words'"], "blank"),
     (["--token-file", "/nonexistent/token"], "--token-file"),
     (["--interval", "often"], "--interval")],
    ids=["unknown-flag", "blank-in-value", "token-file", "interval"],
)
def test_bad_settings_are_refused_before_anything_is_written(tmp_path: Path, extra: list[str], message: str) -> None:
    root = tmp_path / "root"
    r = install(root, *extra)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert not root.exists()


def test_uninstall_removes_what_install_wrote_and_keeps_the_buffer_unless_purged(tmp_path: Path, token: Path) -> None:
    root = tmp_path / "root"
    assert install(root, "--token-file", str(token)).returncode == 0
    buffer = root / "var/lib/private/sotp-agent/buffer"
    buffer.mkdir(parents=True)
    (buffer / "0000000000000001-10.rw").write_bytes(b"x")
    r = sotp("agent", "uninstall", "--root", str(root))
    assert r.returncode == 0, r.stderr
    assert not any((root / p).exists() or (root / p).is_symlink() for p in (UNIT, ENV, TOKEN, WANTS))
    assert not (root / "etc/sotp").exists() and (buffer / "0000000000000001-10.rw").exists()
    again = sotp("agent", "uninstall", "--root", str(root), "--purge")
    assert again.returncode == 0 and not (root / "var/lib/private/sotp-agent").exists()
    assert "nothing" in sotp("agent", "uninstall", "--root", str(root)).stdout


def test_deploy_unit_is_the_template_rendered_for_opt_sotp() -> None:
    assert (REPO / "deploy/systemd/sotp-agent.service").read_text() == render("/opt/sotp/bin/sotp agent")


def test_env_example_survives_shlex_and_systemd_splitting_alike() -> None:
    line = next(ln for ln in (REPO / "deploy/systemd/sotp-agent.env").read_text().splitlines()
                if ln.startswith("SOTP_AGENT_ARGS="))
    value = line.split("=", 1)[1]
    assert shlex.split(value) == value.split()
