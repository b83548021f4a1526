"""Fixtures shared by the end-to-end and resilience suites."""

from __future__ import annotations

import shutil

import pytest

from dialplan import asterisk

# tests.no_skips: a skipped test fails the run under scripts/test and CI.
pytest_plugins = ["pytester", "tests.no_skips"]


@pytest.fixture(scope="session")
def installation() -> asterisk.Installation:
    """Asterisk as `bereik asterisk install` provides it (cached after the first run)."""
    for tool in ("sipp",):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run the tests through scripts/test")
    return asterisk.install(progress=lambda line: None)
