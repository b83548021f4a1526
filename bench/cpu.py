"""CPU time of a process from /proc/PID/stat, its reaped children split out.

Ticks, not wall time: these machines are shared and noisy, and ticks count only the work
the process itself did. For Asterisk the children are the classic AGI scripts it spawned,
so "own" and "children" are exactly the Asterisk and AGI sides of that row.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    own_ms: float  # utime + stime
    children_ms: float  # cutime + cstime: children that exited and were waited for

    def __sub__(self, other: CpuSample) -> CpuSample:
        return CpuSample(self.own_ms - other.own_ms, self.children_ms - other.children_ms)

    def per(self, calls: int) -> CpuSample:
        return CpuSample(self.own_ms / calls, self.children_ms / calls) if calls else self

    @property
    def total_ms(self) -> float:
        return self.own_ms + self.children_ms


def sample(pid: int) -> CpuSample:
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    # The command name (field 2) may hold spaces and parentheses; the rest follows the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return CpuSample((utime + stime) * TICK_MS, (cutime + cstime) * TICK_MS)


IDLE_SECONDS = 10.0
QUICK_IDLE_SECONDS = 3.0


def idle_seconds(quick: bool) -> float:
    """How long a process's CPU with no calls is measured: shorter in --quick."""
    return QUICK_IDLE_SECONDS if quick else IDLE_SECONDS


async def idle_ms_per_s(pid: int, seconds: float) -> float:
    """A process's own CPU with no calls (workers, gauges, AMI pings), in ms per second:
    what a row takes off serve's CPU so that the calls, not the clock, are measured."""
    before, started = sample(pid), time.monotonic()
    await asyncio.sleep(seconds)  # a measurement window, not a wait for an event
    return (sample(pid) - before).total_ms / (time.monotonic() - started)
