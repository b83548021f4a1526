"""Worker: every few seconds, the norm ratios and hopper gauges from the database.

These figures are not counted from events but computed from the ``calls`` and ``hoppers``
tables (``cti.calls.norms``), so a restart of ``bereik serve`` does not reset them, and a
hopper closed through the web or the CLI shows up without any event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from cti.calls.norms import WINDOWS, calls_started_since, hopper_gauges, norm_ratios
from cti.services import Services
from cti.store.faults import every
from metrics.registry import KCC

log = logging.getLogger("bereik.metrics")

INTERVAL_SECONDS = 5.0
# The 7- and 28-day windows (see `run`).
WIDE_EVERY_SECONDS = 60.0


async def refresh(
    services: Services, now: datetime | None = None, windows: Sequence[str] = WINDOWS
) -> None:
    now = now or datetime.now(UTC)
    teams = [team.id for team in services.config.teams]
    async with services.reads() as session:
        ratios = await norm_ratios(
            session,
            teams,
            now,
            services.config.exchange.timezone,
            services.config.queue.short_abandon_seconds,
            windows,
        )
        gauges = await hopper_gauges(session, now)
    services.metrics.set_norm_ratios(ratios)
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
    # screen. Today's ratio and the hopper gauges move with each call and are cheap; the
    # 7- and 28-day ratios read four weeks of rows (most of serve's CPU with no calls, 90 ms
    # a time on the bench's database) and move by a call in thousands: once a minute.
    wide_at = -WIDE_EVERY_SECONDS

    async def job() -> None:
        nonlocal wide_at
        wide = time.monotonic() - wide_at >= WIDE_EVERY_SECONDS
        await refresh(services, windows=WINDOWS if wide else ("today",))
        if wide:
            wide_at = time.monotonic()

    await every(
        interval or INTERVAL_SECONDS,
        job,
        what="the norm ratios and hopper gauges",
        logger=log,
    )
