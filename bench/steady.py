"""CPU per call over a run's steady state only, with the check that the figures add up.

A fixed-rate run ramps up (calls start, none has ended yet) and drains (calls end, none
starts): CPU per call over the whole run mixes both with the part in between. Here sipp
writes its statistics every second (`-fd 1`); at each new line the CPU of the watched
processes is sampled at once, so every sample pairs a CPU reading with sipp's count of
ended calls. The window is the stretch where the number of calls in progress has levelled
off (from the first line at 90 % of its median over the second half of the placing) to
the last line before sipp stops placing. Over that window:

    CPU per call = CPU spent / calls ended,   cores in use = CPU spent / seconds,

and the check: rate × CPU per call ≈ cores in use. They match only when as many calls end
as start in the window, i.e. when the run really was steady.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bench.cpu import CpuSample, sample

T = TypeVar("T")
POLL_SECONDS = 0.05
LEVEL = 0.9  # the window starts where calls in progress reach this share of their median


@dataclass
class Point:
    at: float  # monotonic seconds
    placed: int  # sipp's TotalCallCreated
    ended: int  # sipp's SuccessfulCall(C) + FailedCall(C)
    in_progress: int  # sipp's CurrentCall
    cpu: dict[str, CpuSample]
    line: int = 0  # which statistics line


@dataclass
class Steady:
    """The steady window of one run; empty when the run never levelled off."""

    rate: float
    seconds: float = 0.0
    ended: int = 0
    in_progress: tuple[int, int] = (0, 0)  # at the window's start and end
    cpu: dict[str, CpuSample] = field(default_factory=dict)  # spent per watched process
    note: str = ""

    def per_call(self, name: str) -> CpuSample | None:
        if not self.ended or name not in self.cpu:
            return None
        return self.cpu[name].per(self.ended)

    @property
    def _spent_ms(self) -> float:
        return sum(spent.total_ms for spent in self.cpu.values())

    @property
    def cores(self) -> float | None:
        """CPU in use by the watched processes together, measured."""
        return self._spent_ms / 1000 / self.seconds if self.seconds else None

    @property
    def cores_from_rate(self) -> float | None:
        """rate × CPU per call: what the cores in use should be if the run was steady."""
        return self.rate * self._spent_ms / self.ended / 1000 if self.ended else None

    def check(self) -> str:
        measured, expected = self.cores, self.cores_from_rate
        if measured is None or expected is None:
            return f"no steady window{': ' + self.note if self.note else ''}"
        return (
            f"{self.seconds:.0f} s steady, {self.in_progress[0]}→{self.in_progress[1]} in "
            f"progress, {self.ended} ended: rate × CPU/call = {expected:.2f} cores, "
            f"measured {measured:.2f} ({(expected / measured - 1) if measured else 0:+.0%})"
        )


async def watch(
    run: Awaitable[T], stat_file: Path, rate: float, pids: dict[str, int]
) -> tuple[T, Steady]:
    """Await `run` (sipp writing `stat_file`) while sampling `pids` at each stats line."""
    points: list[Point] = []

    async def follow() -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            # Read and sampled in one step, without yielding: the pair is one moment.
            _poll(stat_file, pids, points)

    follower = asyncio.create_task(follow())
    try:
        result = await run
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    return result, window(points, rate)


def _poll(stat_file: Path, pids: dict[str, int], points: list[Point]) -> None:
    """A point for each new statistics line (sipp writes one a second, so at most one)."""
    try:
        lines = stat_file.read_text().splitlines()
    except OSError:
        return
    if len(lines) - 1 <= _seen(points):
        return
    point = _point(lines[0], lines[-1], {name: sample(pid) for name, pid in pids.items()})
    if point is not None:
        point.line = len(lines) - 1
        points.append(point)


def _seen(points: list[Point]) -> int:
    return points[-1].line if points else 0


def _point(header: str, line: str, cpu: dict[str, CpuSample]) -> Point | None:
    values = dict(zip(header.split(";"), line.split(";"), strict=False))
    try:
        return Point(
            at=time.monotonic(),
            placed=int(values["TotalCallCreated"]),
            ended=int(values["SuccessfulCall(C)"]) + int(values["FailedCall(C)"]),
            in_progress=int(values["CurrentCall"]),
            cpu=cpu,
        )
    except (KeyError, ValueError):
        return None


def window(points: list[Point], rate: float) -> Steady:
    result = Steady(rate)
    if not points:
        result.note = "sipp wrote no statistics"
        return result
    total = points[-1].placed
    # While placing: the points before the last call was placed.
    placing = [p for p in points if p.placed < total]
    if len(placing) < 4:
        result.note = "too short to level off"
        return result
    second_half = sorted(p.in_progress for p in placing[len(placing) // 2 :])
    median = second_half[len(second_half) // 2]
    start = next(p for p in placing if p.in_progress >= LEVEL * median)
    end = placing[-1]
    if end.at - start.at < 2.0:
        result.note = "calls in progress levelled off too late"
        return result
    result.seconds = end.at - start.at
    result.ended = end.ended - start.ended
    result.in_progress = (start.in_progress, end.in_progress)
    result.cpu = {name: end.cpu[name] - start.cpu[name] for name in end.cpu}
    return result
