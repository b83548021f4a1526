"""The call rate of a load test: a share of what this machine holds on the test's path.

A gate typed as a rate passes on a fast machine and fails on a slow or busy one. So a
load test's path (the same parts, the same calls) is measured first: a batch of calls
like the load's own at a low rate, the CPU the whole path costs per call (Asterisk,
Kamailio, `bereik serve`, sipp: every process on the machine), and the load runs at
`MARGIN` of the capacity that gives.

A path is measured once per test run: the first test on it places the batch on its own
exchange, the later ones on the same path take the rate measured then (the session
fixture `calibrations`, tests/resilience/conftest.py).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.exchange import SippResult
from tests.resilience.figures import Figures

MARGIN = 0.5  # the gate runs at half the measured capacity


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat, first line)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True)
class Calibration:
    """One path's measurement: what a call costs and the rate a load on it runs at."""

    cpu_per_call: float
    capacity: float
    rate: float
    measured_by: str  # the test whose exchange took the batch


@dataclasses.dataclass(frozen=True)
class Rate:
    """The rate a test loads with, and how many calibration calls it placed itself (the
    batch's calls on its exchange, 0 when an earlier test measured the path)."""

    rate: float
    calls_placed: int


def capacity_rate(cpu_per_call: float, max_rate: float, forced: float = 0) -> tuple[float, float]:
    """(capacity, rate): cores / CPU per call, and `MARGIN` of it, at least 1, at most
    `max_rate` (the issue's rate), to a tenth; `forced` instead when set."""
    capacity = (os.cpu_count() or 1) / cpu_per_call
    return capacity, forced or max(1.0, min(max_rate, round(capacity * MARGIN, 1)))


class Calibrations:
    """The paths measured in this run, by name."""

    def __init__(self) -> None:
        self.measured: dict[str, Calibration] = {}

    async def rate(
        self,
        path: str,
        batch: Callable[[], Awaitable[SippResult]],
        calls: int,
        figures: Figures,
        *,
        max_rate: float,
        forced: float = 0,
    ) -> Rate:
        """The rate for a load on `path`. On the path's first use `batch()` places `calls`
        calls like the load's own, as long as the load's (media costs CPU for as long as a
        call lasts), on the caller's exchange, and the machine's busy time over it gives
        the CPU per call; later uses take that measurement. `forced` sets the rate instead
        (the path is measured all the same)."""
        placed = 0
        known = self.measured.get(path)
        if known is None:
            busy = machine_busy_seconds()
            result = await batch()
            assert result.returncode == 0, result.stderr[-2000:]
            cpu_per_call = (machine_busy_seconds() - busy) / calls
            capacity, rate = capacity_rate(cpu_per_call, max_rate, forced)
            known = Calibration(cpu_per_call, capacity, rate, figures.test)
            self.measured[path] = known
            placed = calls
        figures["CPU s per call (whole path)"] = round(known.cpu_per_call, 3)
        figures["capacity calls/s"] = round(known.capacity, 1)
        figures["gate calls/s"] = known.rate
        if not placed:
            figures["capacity measured by"] = known.measured_by
        print(
            f"\n[rate] {known.rate} calls/s on {path} (capacity {known.capacity:.1f}, "
            f"{known.cpu_per_call:.3f} CPU s a call, measured by {known.measured_by})"
        )
        return Rate(known.rate, placed)
