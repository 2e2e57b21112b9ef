"""The fault suite prints its table (one row per scenario) at the end of the run, also without ``-s``."""

from __future__ import annotations

import pytest

from tests.faults import loadgen


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if loadgen.ROWS:
        terminalreporter.write_sep("=", "fault suite: acknowledged samples after each fault")
        terminalreporter.write_line(loadgen.format_table(loadgen.ROWS))
