"""Fixtures for end-to-end tests: a real Asterisk (installed once), sipp, `bereik serve`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bereik import asterisk
from tests.e2e.harness import Exchange, exchange

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def installation() -> asterisk.Installation:
    for tool in ("sipp",):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run the tests through .ci/run")
    return asterisk.install(progress=lambda line: None)


@pytest.fixture
def kcc(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    """The smallest exchange: 14070 and one KCC agent's phone."""
    with exchange(installation, tmp_path) as ex:
        ex.start_asterisk()
        yield ex
