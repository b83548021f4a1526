"""Fixtures for end-to-end tests: a real Asterisk (installed once), sipp, `bereik serve`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.exchange import Exchange, exchange
from dialplan import asterisk

pytestmark = pytest.mark.e2e


@pytest.fixture
def kcc(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    """The smallest exchange: 14070 and one KCC agent's phone."""
    with exchange(installation, tmp_path) as ex:
        ex.start_asterisk()
        yield ex
