"""Fixtures for the resilience suite: the same real parts as the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.exchange import Exchange, exchange
from dialplan import asterisk
from tests.resilience.figures import Figures
from tests.support.calibration import Calibrations


@pytest.fixture
def kcc(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    with exchange(installation, tmp_path) as ex:
        ex.start_asterisk()
        yield ex


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    table = Figures(request.node.name)
    yield table
    table.report()


@pytest.fixture(scope="session")
def calibrations() -> Calibrations:
    """Each load path's capacity, measured once per run by the first test on it."""
    return Calibrations()
