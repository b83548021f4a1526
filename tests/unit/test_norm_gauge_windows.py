"""The norm gauges' worker: today's ratio on every round, the 7- and 28-day ratios (four
weeks of rows) once a minute."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cti.calls import gauges
from cti.calls.norms import WINDOWS
from tests.support.memory_services import CONFIG, memory_services


async def test_the_wide_windows_are_read_once_a_minute_and_today_every_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds: list[tuple[str, ...]] = []
    enough = asyncio.Event()

    async def refresh(_services: Any, now: Any = None, windows: Sequence[str] = WINDOWS) -> None:
        rounds.append(tuple(windows))
        if len(rounds) == 5:
            enough.set()

    monkeypatch.setattr(gauges, "refresh", refresh)
    async with memory_services(CONFIG, tmp_path) as services:
        worker = asyncio.create_task(gauges.run(services, interval=0.001))
        await asyncio.wait_for(enough.wait(), 5)
        worker.cancel()
    assert rounds[0] == WINDOWS
    assert set(rounds[1:5]) == {("today",)}
