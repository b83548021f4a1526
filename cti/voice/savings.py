"""What an announcement saves: callers who heard it and then ended the call without a
person, against those who went on to the KCC or a team.

The call listener writes one ``announcement_hearings`` row per item a caller heard, once
the call has ended (cti/calls/listener.py, from the IVR's ``BereikPlayed`` events). An
item is an announcement (``announcement:<id>``) or a menu's channel-steering text
(``info:<key>``, ``info:3.1`` in a submenu). Shown beside each announcement on the
operator screen and on /metrics: today, for the active announcements and the menu's info
keys only, so the ``item`` label stays as few as the operators and the menu make it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cti.announcements.pages import info_options
from cti.announcements.service import is_active
from cti.calls.norms import window_starts
from cti.services import Services
from cti.store.faults import every
from cti.store.models import Announcement, AnnouncementHearing

log = logging.getLogger("bereik.announcements")

INTERVAL_SECONDS = 5.0
RESULTS = ("saved", "went_on")


async def savings(
    session: AsyncSession, since: datetime, until: datetime | None = None
) -> dict[str, dict[str, int]]:
    """{item: {"saved": n, "went_on": n}} for calls that ended in [since, until)."""
    query = select(AnnouncementHearing.item, AnnouncementHearing.result, func.count()).where(
        AnnouncementHearing.at >= since
    )
    if until is not None:
        query = query.where(AnnouncementHearing.at < until)
    found: dict[str, dict[str, int]] = {}
    for item, result, count in (
        await session.execute(query.group_by(AnnouncementHearing.item, AnnouncementHearing.result))
    ).all():
        found.setdefault(item, dict.fromkeys(RESULTS, 0))[result] = int(count)
    return found


async def today(services: Services, now: datetime | None = None) -> dict[str, dict[str, int]]:
    now = now or datetime.now(UTC)
    since = window_starts(now, services.config.exchange.timezone)["today"]
    async with services.reads() as session:
        return await savings(session, since)


async def refresh(services: Services, now: datetime | None = None) -> None:
    """Today's figures on /metrics for what a caller can hear now."""
    now = now or datetime.now(UTC)
    figures = await today(services, now)
    async with services.sessions() as session:
        live = [
            f"announcement:{a.id}"
            for a in (
                await session.execute(select(Announcement).where(Announcement.ended_at.is_(None)))
            ).scalars()
            if is_active(a, now)
        ]
    items = live + [item for item, _ in info_options(services.config.menu.options)]
    gauge = services.metrics.voice.announcement_callers
    # An ended announcement leaves /metrics. No await between clearing and setting, so a
    # scrape (on this event loop) never sees the series missing.
    gauge.clear()
    for item in items:
        counts = figures.get(item, dict.fromkeys(RESULTS, 0))
        for result in RESULTS:
            gauge.labels(item=item, result=result).set(counts[result])


async def run(services: Services) -> None:
    await every(
        INTERVAL_SECONDS, lambda: refresh(services), what="the announcement savings", logger=log
    )
