"""Worker: every few seconds, the norm ratios and hopper gauges from the database.

These figures are not counted from events but computed from the ``calls`` and ``hoppers``
tables (``cti.calls.norms``), so a restart of ``bereik serve`` does not reset them, and a
hopper closed through the web or the CLI shows up without any event.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from cti.calls.norms import (
    WINDOWS,
    Counts,
    add_counts,
    calls_started_since,
    hopper_gauges,
    norm_counts,
    norm_ratios,
    ratios,
    window_starts,
)
from cti.services import Services
from cti.store.faults import every
from metrics.registry import KCC

log = logging.getLogger("bereik.metrics")

INTERVAL_SECONDS = 5.0
# The 7- and 28-day windows' part before today (see `Gauges`).
WIDE_EVERY_SECONDS = 60.0


async def refresh(services: Services, now: datetime | None = None) -> None:
    """Every window's ratio and the hopper gauges, read whole (see `Gauges` for the worker)."""
    await Gauges(services).refresh(now, whole=True)


class Gauges:
    """The worker's state: each wide window (7 and 28 days) is the sum of its part before
    today, read once a minute (four weeks of rows: 93 ms of CPU on the bench's database,
    most of bereik serve's CPU with no calls, when it was read every 5 s), and today's,
    read every round with today's own ratio. Counts of adjoining periods add up, so the
    wide ratios move with each call as today's does."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.before: Counts = {}
        self.before_at = -WIDE_EVERY_SECONDS
        self.before_day: datetime | None = None

    async def refresh(self, now: datetime | None = None, whole: bool = False) -> None:
        services = self.services
        config = services.config
        now = now or datetime.now(UTC)
        teams = [team.id for team in config.teams]
        starts = window_starts(now, config.exchange.timezone)
        midnight = starts["today"]
        wide = {window: start for window, start in starts.items() if window != "today"}
        short = config.queue.short_abandon_seconds
        async with services.reads() as session:
            stale = time.monotonic() - self.before_at >= WIDE_EVERY_SECONDS
            if whole or stale or self.before_day != midnight:
                self.before = await norm_counts(session, teams, now, wide, short, end=midnight)
                self.before_at, self.before_day = time.monotonic(), midnight
            # Today's part of every window: from midnight on, counted once for each.
            today = await norm_counts(
                session, teams, now, dict.fromkeys(starts, midnight), short, end=now
            )
            gauges = await hopper_gauges(session, now)
        counts = {key: value for key, value in today.items() if key[1] == "today"}
        counts |= add_counts(self.before, {k: v for k, v in today.items() if k[1] != "today"})
        services.metrics.set_norm_ratios(ratios(counts))
        services.metrics.set_hopper_gauges(gauges)


async def board_figures(services: Services, now: datetime | None = None) -> dict[str, Any]:
    """The supervisor's board: the same figures as the gauges, per team, and who waits."""
    now = now or datetime.now(UTC)
    config = services.config
    teams = [t.id for t in config.teams]
    names = {t.id: t.name for t in config.teams} | {KCC: "KCC"}
    start_of_day = now.astimezone(ZoneInfo(config.exchange.timezone)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    async with services.reads() as session:
        ratios = await norm_ratios(
            session, teams, now, config.exchange.timezone, config.queue.short_abandon_seconds
        )
        gauges = await hopper_gauges(session, now)
        calls_today = await calls_started_since(session, start_of_day)
    rows = []
    for team in [*teams, KCC]:
        open_, overdue = gauges.get(team, (0, 0))
        rows.append(
            {
                "team": team,
                "name": names.get(team, team),
                "norm": {w: ratios.get((team, w)) for w in WINDOWS},
                "open": open_,
                "overdue": overdue,
                "calls_today": calls_today.get("" if team == KCC else team, 0),
            }
        )
    waiting = services.metrics.gauge_values("bereik_calls_waiting", "team")
    return {"at": now.isoformat(), "windows": list(WINDOWS), "teams": rows, "waiting": waiting}


async def run(services: Services, interval: float | None = None) -> None:
    # Prometheus scrapes every 15 s or so; a few seconds' staleness is invisible on a wall
    # screen.
    gauges = Gauges(services)
    await every(
        interval or INTERVAL_SECONDS,
        gauges.refresh,
        what="the norm ratios and hopper gauges",
        logger=log,
    )
