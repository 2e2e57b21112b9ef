"""``sotp rules test`` and ``sotp rules check`` against Debian's promtool 2.42 as the oracle.

Every ``tests/rules/corpus/*.test.yml`` is run by both tools from the corpus directory; exit code, stdout
and stderr must be identical. Every ``tests/rules/corpus/*.rules.yml`` is checked by both. The expected
output is promtool's, computed in the same test run, never a stored copy of SOTP's output.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
from pathlib import Path

import pytest

from rules.check import check_files
from rules.unittest import run_unit_tests
from tests.conftest import require_binary

CORPUS = Path(__file__).parent / "corpus"
TESTS = sorted(p.name for p in CORPUS.glob("*.test.yml"))
RULE_FILES = sorted(p.name for p in CORPUS.glob("*.rules.yml"))


def _promtool(*args: str) -> tuple[int, str, str]:
    exe = require_binary("promtool")
    p = subprocess.run([exe, *args], cwd=CORPUS, capture_output=True, text=True, timeout=120, check=False)
    return p.returncode, p.stdout, p.stderr


def _in_corpus(fn):  # type: ignore[no-untyped-def]
    import os

    old = os.getcwd()
    os.chdir(CORPUS)
    try:
        return fn()
    finally:
        os.chdir(old)


@pytest.mark.parametrize("name", TESTS)
def test_rules_test_matches_promtool(name: str) -> None:
    want = _promtool("test", "rules", name)
    out, err = io.StringIO(), io.StringIO()
    rc = _in_corpus(lambda: asyncio.run(run_unit_tests([name], out, err)))
    assert (rc, out.getvalue(), err.getvalue()) == want


@pytest.mark.parametrize("name", RULE_FILES)
def test_rules_check_matches_promtool(name: str) -> None:
    want = _promtool("check", "rules", name)  # parse errors included: "1:7: parse error: ..." (query/lex.py)
    out, err = io.StringIO(), io.StringIO()
    rc = _in_corpus(lambda: check_files([name], out=out, err=err))
    assert (rc, out.getvalue(), err.getvalue()) == want


def test_corpus_has_passing_and_failing_files() -> None:
    """The corpus must exercise both outcomes, or identical results would prove little."""
    rcs = {_promtool("test", "rules", n)[0] for n in TESTS}
    assert rcs == {0, 1}
