"""The call rate of a load test: a share of what this machine holds on the test's path.

A gate typed as a rate passes on a fast machine and fails on a slow or busy one. So each
load test first places a batch of calls like its own at a low rate, measures the CPU the
whole path costs per call (Asterisk, Kamailio, `bereik serve`, sipp: every process on the
machine), and runs at `MARGIN` of the capacity that gives.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable
from pathlib import Path

from bench.exchange import SippResult
from tests.resilience.figures import Figures

MARGIN = 0.5  # the gate runs at half the measured capacity


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat, first line)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def calibrated_rate(
    batch: Awaitable[SippResult],
    calls: int,
    figures: Figures,
    *,
    max_rate: float,
    forced: float = 0,
) -> float:
    """Calls per second to load with: `MARGIN` of the capacity `batch` (placing `calls`
    calls like the load's own, with calls as long as the load's: media costs CPU for as long
    as a call lasts) shows, at least 1, at most `max_rate` (the issue's rate), to a tenth;
    `forced` instead when set (the batch runs all the same)."""
    busy = machine_busy_seconds()
    result = await batch
    assert result.returncode == 0, result.stderr[-2000:]
    cpu_per_call = (machine_busy_seconds() - busy) / calls
    capacity = (os.cpu_count() or 1) / cpu_per_call
    rate = forced or max(1.0, min(max_rate, round(capacity * MARGIN, 1)))
    figures["CPU s per call (whole path)"] = round(cpu_per_call, 3)
    figures["capacity calls/s"] = round(capacity, 1)
    figures["gate calls/s"] = rate
    print(f"\n[rate] {rate} calls/s (capacity {capacity:.1f}, {cpu_per_call:.3f} CPU s a call)")
    return rate
