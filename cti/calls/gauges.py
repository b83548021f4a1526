"""Worker: every few seconds, the norm ratios and hopper gauges from the database.

These figures are not counted from events but computed from the ``calls`` and ``hoppers``
tables (``cti.calls.norms``), so a restart of ``bereik serve`` does not reset them, and a
hopper closed through the web or the CLI shows up without any event.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from cti.calls.norms import hopper_gauges, norm_ratios
from cti.services import Services

log = logging.getLogger("bereik.metrics")

INTERVAL_SECONDS = 5.0


async def refresh(services: Services, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    teams = [team.id for team in services.config.teams]
    async with services.sessions() as session:
        ratios = await norm_ratios(
            session,
            teams,
            now,
            services.config.exchange.timezone,
            services.config.queue.short_abandon_seconds,
        )
        gauges = await hopper_gauges(session, now)
    services.metrics.set_norm_ratios(ratios)
    services.metrics.set_hopper_gauges(gauges)


async def run(services: Services, interval: float | None = None) -> None:
    # Prometheus scrapes every 15 s or so; a few seconds' staleness is invisible on a wall
    # screen, and the two grouped queries stay cheap at that rate.
    interval = interval or INTERVAL_SECONDS
    while True:
        try:
            await refresh(services)
        except Exception:
            log.exception("norm ratios and hopper gauges not refreshed")
        await asyncio.sleep(interval)
