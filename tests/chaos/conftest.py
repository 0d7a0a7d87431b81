"""Fixtures of the chaos suite: real clusters (mosquitto, Docker, managers as processes) with
faults injected from outside, as an operator would meet them. Cluster helpers come from the
integration suite; each test records what it injected and found in `chaos_report`, and the
run ends with one summary table."""

from __future__ import annotations

import pytest

from tests.chaos.report import ChaosReport
from tests.integration.conftest import _need_mosquitto, cluster  # noqa: F401  (fixtures)

_REPORT = ChaosReport()


@pytest.fixture
def chaos_report() -> ChaosReport:
    return _REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _REPORT.rows:
        return
    terminalreporter.section("chaos summary")
    for line in _REPORT.table():
        terminalreporter.write_line(line)
    _REPORT.write()
