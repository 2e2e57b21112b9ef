"""Backup diffs against GNU diff, and what ``sotp backup`` says when there is nothing to do (issue 23, points 4, 6)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sotp.storage.configs import ConfigVersion
from tests.conftest import REPO, require_binary
from worker.backup.scheduler import unified_diff

CASES = {
    # the report: stored text without a trailing newline, change on the last line
    "last-line-no-newline": ("interface Gi0/1\n  mtu 1500", "interface Gi0/1\n  mtu 9000"),
    "last-line-with-newline": ("interface Gi0/1\n  mtu 1500\n", "interface Gi0/1\n  mtu 9000\n"),
    "newline-added-at-end": ("hostname r1\nend", "hostname r1\nend\n"),
    "newline-removed-at-end": ("hostname r1\nend\n", "hostname r1\nend"),
    "line-appended-after-unterminated": ("a\nb", "a\nb\nc"),
    "middle-change-unterminated-end": ("a\nb\nc\nd\ne\nf\ng\nh", "a\nb\nX\nd\ne\nf\ng\nh"),
}


def gnu_diff_body(old: str, new: str, tmp: Path) -> str:
    """``diff -u`` of the two texts without its two header lines (the reference output)."""
    diff = require_binary("diff")
    (tmp / "old").write_text(old)
    (tmp / "new").write_text(new)
    out = subprocess.run([diff, "-u", str(tmp / "old"), str(tmp / "new")], capture_output=True, text=True).stdout
    return "".join(out.splitlines(keepends=True)[2:])


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_diff_matches_gnu_diff(case: str, tmp_path: Path) -> None:
    old, new = CASES[case]
    v1 = ConfigVersion("r1", 1, 1_700_000_000_000, "d1", len(old))
    v2 = ConfigVersion("r1", 2, 1_700_000_060_000, "d2", len(new))
    ours = unified_diff("r1", (v1, old), (v2, new))
    assert ours.startswith("--- r1 v1 (") and "\n+++ r1 v2 (" in ours
    assert "".join(ours.splitlines(keepends=True)[2:]) == gnu_diff_body(old, new, tmp_path)


def sotp(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "sotp", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=60)


def test_run_without_devices_says_so_and_fails(tmp_path: Path) -> None:
    r = sotp("backup", "run", cwd=tmp_path)
    assert r.returncode == 2
    assert "no devices configured" in r.stderr and "--config" in r.stderr
    (tmp_path / "empty.yml").write_text("backup: {interval: 1h}\n")
    r = sotp("backup", "run", "--config", "empty.yml", cwd=tmp_path)
    assert r.returncode == 2 and "no devices configured in empty.yml" in r.stderr


@pytest.mark.parametrize("action", [["list"], ["diff", "r1"]])
def test_reading_a_missing_store_names_it_and_creates_nothing(tmp_path: Path, action: list[str]) -> None:
    r = sotp("backup", *action, cwd=tmp_path)
    assert r.returncode == 2
    assert f"no store at {tmp_path / 'data' / 'sotp.db'}" in r.stderr
    assert not (tmp_path / "data").exists()
    r = sotp("backup", *action, "--data-dir", str(tmp_path / "elsewhere"), cwd=tmp_path)
    assert r.returncode == 2 and f"no store at {tmp_path / 'elsewhere' / 'sotp.db'}" in r.stderr


def test_list_of_an_empty_store_says_it_is_empty(tmp_path: Path) -> None:
    r = sotp("db", "migrate", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = sotp("backup", "list", "--data-dir", str(tmp_path), cwd=REPO)
    assert r.returncode == 0 and r.stdout == ""
    assert "no configuration stored yet" in r.stderr
