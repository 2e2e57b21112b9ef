"""The rules shipped in ``deploy/rules/`` pass their promtool-format unit tests under both promtool and SOTP."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
from pathlib import Path

import pytest

from rules.check import check_files
from rules.unittest import run_unit_tests
from tests.conftest import REPO, require_binary

RULES_DIR = REPO / "deploy" / "rules"
TESTS = sorted(p.name for p in RULES_DIR.glob("*.test.yml"))
RULE_FILES = sorted(p.name for p in RULES_DIR.glob("*.rules.yml"))


def test_every_rule_file_has_a_unit_test() -> None:
    assert RULE_FILES, "deploy/rules has no rule files"
    for name in RULE_FILES:
        assert name.replace(".rules.yml", ".test.yml") in TESTS, f"{name} has no unit test"


@pytest.mark.parametrize("name", TESTS)
def test_shipped_rules_pass_under_promtool(name: str) -> None:
    exe = require_binary("promtool")
    p = subprocess.run([exe, "test", "rules", name], cwd=RULES_DIR, capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert "SUCCESS" in p.stdout


@pytest.mark.parametrize("name", TESTS)
def test_shipped_rules_pass_under_sotp(name: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(RULES_DIR)
    try:
        rc = asyncio.run(run_unit_tests([name], out, err))
    finally:
        os.chdir(old)
    assert rc == 0, err.getvalue()
    assert out.getvalue() == f"Unit Testing:  {name}\n  SUCCESS\n\n"


@pytest.mark.parametrize("name", RULE_FILES)
def test_shipped_rules_check_clean(name: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert check_files([str(RULES_DIR / name)], out=out, err=err) == 0, err.getvalue()
    assert "SUCCESS" in out.getvalue()


def test_a_broken_shipped_rule_fails_its_test(tmp_path: Path) -> None:
    """The unit tests really check the rules: weakening a threshold makes them fail under both tools."""
    exe = require_binary("promtool")
    original = (RULES_DIR / "sotp.rules.yml").read_text()
    text = original.replace("expr: up == 0\n        for: 2m", "expr: up == 0\n        for: 9m")
    assert "for: 9m" in text
    (tmp_path / "sotp.rules.yml").write_text(text)
    (tmp_path / "sotp.test.yml").write_text((RULES_DIR / "sotp.test.yml").read_text())
    p = subprocess.run([exe, "test", "rules", "sotp.test.yml"], cwd=tmp_path, capture_output=True, text=True,
                       check=False)
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        rc = asyncio.run(run_unit_tests(["sotp.test.yml"], out, err))
    finally:
        os.chdir(old)
    assert (rc, out.getvalue(), err.getvalue()) == (p.returncode, p.stdout, p.stderr)
    assert rc == 1 and "alertname: TargetDown" in err.getvalue()
