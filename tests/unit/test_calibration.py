"""The load tests' calibration: one batch per path and run, its rate reused on that path."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bench.exchange import SippResult
from tests.resilience.figures import Figures
from tests.support.calibration import MARGIN, Calibrations, capacity_rate


class Batches:
    """A stand-in for sipp's calibration batch that burns some CPU, counting its runs."""

    def __init__(self) -> None:
        self.runs = 0

    async def __call__(self) -> SippResult:
        self.runs += 1
        until = time.process_time() + 0.05
        while time.process_time() < until:
            pass
        return SippResult(returncode=0, stat_file=Path("/nonexistent"), stderr="")


async def test_a_path_is_measured_once_and_its_rate_reused() -> None:
    calibrations = Calibrations()
    batches = Batches()
    first, later = Figures("first"), Figures("later")
    measured = await calibrations.rate("path", batches, 10, first, max_rate=20)
    reused = await calibrations.rate("path", batches, 10, later, max_rate=20)
    assert batches.runs == 1
    assert (measured.calls_placed, reused.calls_placed) == (10, 0)
    assert reused.rate == measured.rate
    assert later.values["gate calls/s"] == first.values["gate calls/s"] == measured.rate
    assert later.values["capacity measured by"] == "first"
    assert "capacity measured by" not in first.values


async def test_another_path_gets_its_own_batch() -> None:
    calibrations = Calibrations()
    batches = Batches()
    await calibrations.rate("one", batches, 10, Figures("a"), max_rate=20)
    await calibrations.rate("other", batches, 10, Figures("b"), max_rate=20)
    assert batches.runs == 2


async def test_a_failed_batch_fails_the_test_and_measures_nothing() -> None:
    calibrations = Calibrations()

    async def failing() -> SippResult:
        return SippResult(returncode=1, stat_file=Path("/nonexistent"), stderr="sipp: no answer")

    with pytest.raises(AssertionError, match="no answer"):
        await calibrations.rate("path", failing, 10, Figures("t"), max_rate=20)
    assert calibrations.measured == {}


def test_the_rate_is_the_margin_of_the_capacity_within_its_bounds() -> None:
    cores = os.cpu_count() or 1
    capacity, rate = capacity_rate(cores / 8, max_rate=20)  # 8 calls/s
    assert capacity == pytest.approx(8)
    assert rate == round(8 * MARGIN, 1)
    assert capacity_rate(cores / 100, max_rate=20)[1] == 20  # never above the issue's
    assert capacity_rate(cores / 0.5, max_rate=20)[1] == 1  # at least one a second
    assert capacity_rate(cores / 8, max_rate=20, forced=3.5)[1] == 3.5
