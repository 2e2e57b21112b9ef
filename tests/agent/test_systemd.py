"""The systemd unit and its example environment file."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import configure_parser, target_labels
from tests.conftest import REPO

UNIT = REPO / "deploy" / "systemd" / "sotp-agent.service"
ENV = REPO / "deploy" / "systemd" / "sotp-agent.env"


def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        # a tool, not a service: a machine without systemd cannot run this check, even under CI
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    return tool


def local_unit(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointed at this checkout's interpreter (verify checks the binary exists)."""
    text = (text or UNIT.read_text()).replace("/opt/sotp/bin/sotp agent", f"{sys.executable} -m sotp agent")
    path = tmp_path / "sotp-agent.service"
    path.write_text(text)
    return path


def verify(tool: str, unit: Path) -> str:
    r = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=unit.parent)
    return (r.stdout + r.stderr).strip() + ("" if r.returncode == 0 else f"\nrc={r.returncode}")


def test_unit_verifies_clean(tmp_path: Path) -> None:
    assert verify(analyze(), local_unit(tmp_path)) == ""


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    # the negative control: systemd-analyze exits 0 on bad keys, so the test must read its output
    broken = UNIT.read_text().replace("NoNewPrivileges=yes", "NoNewPrivileges=maybe\nProtectSystm=strict")
    out = verify(analyze(), local_unit(tmp_path, broken))
    assert "maybe" in out and "ProtectSystm" in out


def test_hardening_exposure_is_low(tmp_path: Path) -> None:
    tool = analyze()
    r = subprocess.run([tool, "security", "--offline=true", str(local_unit(tmp_path))],
                       capture_output=True, text=True, timeout=60)
    if "--offline" in r.stderr and r.returncode != 0:
        pytest.skip(f"systemd-analyze security --offline unsupported here: {r.stderr.strip()[:200]}")
    line = [ln for ln in r.stdout.splitlines() if "Overall exposure level" in ln]
    assert line, r.stdout[-500:] + r.stderr
    exposure = float(line[0].split(":")[1].split()[0])
    assert exposure <= 2.5, line[0]


@pytest.mark.parametrize(
    "directive",
    ["DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "Restart=on-failure",
     "StateDirectory=sotp-agent", "CapabilityBoundingSet=\n"],
)
def test_required_hardening_present(directive: str) -> None:
    assert directive in UNIT.read_text()


def test_example_env_makes_a_valid_command_line() -> None:
    env: dict[str, str] = {"SOTP_INTERVAL": "15s"}
    for line in ENV.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            k, _, v = line.partition("=")
            env[k] = v
    exec_start = next(ln for ln in UNIT.read_text().splitlines() if ln.startswith("ExecStart="))
    # systemd: ${X} is one word, $X splits on whitespace, %d is the credentials directory
    argv = []
    for word in exec_start.removeprefix("ExecStart=").split():
        if word.startswith("${"):
            argv.append(env[word[2:-1]])
        elif word.startswith("$"):
            argv += shlex.split(env[word[1:]])
        else:
            argv.append(word.replace("%d", "/run/credentials/sotp-agent.service"))
    assert argv[:2] == ["/opt/sotp/bin/sotp", "agent"]
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(argv[2:])
    assert args.url == "http://core.example.net:9201/api/v1/write"
    assert args.token_file == "/run/credentials/sotp-agent.service/token"
    assert target_labels(args)["env"] == "prod"
