"""Admission control: take a call only when it can hear its first prompt within a bound.

Past its capacity, `bereik serve` used to accept every FastAGI connection, and callers
waited in silence (up to 20 s) while the loop worked through a backlog. A refused
connection costs the caller nothing: the dialplan's static fallback takes the call at
once (the KCC). So a new call is refused while the process shows it is behind:

* recent calls waited on average (exponentially weighted) more than `stall_seconds`
  (half the first-prompt bound) from accept to their first command ("slow"; the average
  fades while no call is admitted to update it, so a past burst cannot keep refusing
  every caller after the backlog is gone), or two or
  more calls accepted earlier still wait for theirs after twice that, the whole bound
  ("stalled"): the newest arrivals would wait longer still. One call that waits on a
  slow speech synthesis or a stuck query is not yet an overload, so it sheds nothing;
* the event loop runs late by more than `lag_seconds` (measured by a ticker every
  `TICK` s): every session's next prompt is late by that much;
* `max_calls` sessions are in progress (a hard cap for file descriptors and memory).

Both signals are measured on the running process, so the capacity follows the machine
and the mix of calls; no figure from a benchmark is typed into the configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from dataclasses import dataclass

TICK = 0.05
# The lag that counts is the worst of the last WINDOW ticks (half a second): a loop that
# stalls now and then is behind, even if the latest tick happened to be on time.
WINDOW = 10


@dataclass(frozen=True)
class Limits:
    max_calls: int = 500
    stall_seconds: float = 0.5
    lag_seconds: float = 0.25


# Weight of the newest first-command wait in the running average.
ALPHA = 0.2
# Refused calls do not update that average: without fading, one burst latched "slow" and
# refused every later caller, also on an idle process (found by the bench's max-rate
# search). So it holds for HOLD_SECONDS after its last sample, then fades (e-folding
# FADE_SECONDS): from a backlog's typical 0.8 s it is under the 0.5 s bound again about
# 3.4 s after the last slow call, and the next admitted calls measure afresh.
HOLD_SECONDS = 1.0
FADE_SECONDS = 5.0
STALLED_CALLS = 2


class Admission:
    """Counts sessions from accept to their first command, and the event loop's lag."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.active = 0
        self.lag = 0.0
        self._average = 0.0  # running average of accept → first command, as last sampled
        self._sampled_at = 0.0
        # Accept times of sessions that have not sent their first command yet, by id.
        self._starting: dict[int, float] = {}
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._measure_lag(), name="agi-loop-lag")

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    def refusal(self, now: float | None = None) -> str:
        """Why a new call is refused now ("" to admit it): calls, stalled, slow or lag."""
        if self.active >= self.limits.max_calls:
            return "calls"
        now = time.monotonic() if now is None else now
        bound = 2 * self.limits.stall_seconds
        stalled = sum(1 for since in self._starting.values() if now - since > bound)
        if stalled >= STALLED_CALLS:
            return "stalled"
        if self.first_command_seconds(now) > self.limits.stall_seconds:
            return "slow"
        if self.lag > self.limits.lag_seconds:
            return "lag"
        return ""

    def admitted(self, session: int, now: float | None = None) -> None:
        self.active += 1
        self._starting[session] = time.monotonic() if now is None else now

    def first_command(self, session: int, now: float | None = None) -> None:
        since = self._starting.pop(session, None)
        if since is not None:
            now = time.monotonic() if now is None else now
            current = self.first_command_seconds(now)
            self._average = current + ALPHA * (now - since - current)
            self._sampled_at = now

    def first_command_seconds(self, now: float) -> float:
        """The running average of accept → first command, faded since its last sample."""
        idle = max(0.0, now - self._sampled_at - HOLD_SECONDS)
        return self._average * math.exp(-idle / FADE_SECONDS)

    def ended(self, session: int) -> None:
        self.active -= 1
        self._starting.pop(session, None)

    async def _measure_lag(self) -> None:
        # The loop's lag is how late a sleep wakes up.
        recent: deque[float] = deque(maxlen=WINDOW)
        while True:
            before = time.monotonic()
            await asyncio.sleep(TICK)
            recent.append(max(0.0, time.monotonic() - before - TICK))
            self.lag = max(recent)
