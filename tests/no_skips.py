"""A skipped test fails the run when the test command runs (BEREIK_NO_SKIPS=1 or CI=true).

A skip hides a missing tool or an unmet condition behind a green run. Run by hand, a skip
is allowed (pytest lists it); under `scripts/test` and in CI any skip, of a test or of a
whole module, makes the exit status 1 and is named in the summary. An expected failure
(xfail) is not a skip.
"""

from __future__ import annotations

import os

import pytest


def enabled() -> bool:
    return os.environ.get("BEREIK_NO_SKIPS") == "1" or os.environ.get("CI", "").lower() == "true"


class NoSkips:
    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []

    def _note(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr or "")
            self.skipped.append((report.nodeid, reason))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._note(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._note(report)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.skipped:
            return
        terminalreporter.section("skipped tests fail this run", sep="=", red=True, bold=True)
        for nodeid, reason in self.skipped:
            terminalreporter.line(f"SKIPPED {nodeid or '(collection)'}: {reason}", red=True)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.skipped and session.exitstatus in (
            pytest.ExitCode.OK,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config: pytest.Config) -> None:
    if enabled():
        config.pluginmanager.register(NoSkips(), "bereik-no-skips")
