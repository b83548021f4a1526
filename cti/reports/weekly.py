"""Worker: every Monday, last week's figures to each team lead, through the outbox.

The mail is queued with the key ``weekly:<team>:<ISO week>``; the outbox's unique key makes
it exactly once, whichever process (or restart) gets there first. A team without a
``lead_mailbox`` gets no mail. The KCC's figures go to ``kcc.supervisor_mailbox`` if set.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from cti.reports.figures import add_first_line, add_survey, build_report, iso_week, parse_period
from cti.reports.render import to_text
from cti.services import Services
from cti.store.faults import every
from cti.store.models import OutboxMail

log = logging.getLogger("bereik.reports")

CHECK_SECONDS = 600.0


def recipients(services: Services) -> list[tuple[str, str, str]]:
    """(team id, name, mailbox) of every team whose lead gets the weekly mail."""
    config = services.config
    result = [(t.id, t.name, t.lead_mailbox) for t in config.teams if t.lead_mailbox]
    if config.kcc.supervisor_mailbox:
        result.insert(0, ("kcc", "KCC", config.kcc.supervisor_mailbox))
    return result


async def queue_weekly(services: Services, now: datetime | None = None) -> int:
    """Queue last week's mails not queued yet; the number queued now."""
    now = now or datetime.now(UTC)
    tz = services.config.exchange.timezone
    last_week = (now.astimezone(ZoneInfo(tz)) - timedelta(days=7)).date()
    period = parse_period(iso_week(last_week))
    leads = recipients(services)
    async with services.sessions() as session:
        done = set(
            await session.scalars(
                select(OutboxMail.key).where(
                    OutboxMail.key.in_([f"weekly:{t}:{period.label}" for t, _, _ in leads])
                )
            )
        )
    leads = [lead for lead in leads if f"weekly:{lead[0]}:{period.label}" not in done]
    if not leads:
        return 0
    async with services.sessions() as session:
        teams = [(t, n) for t, n, _ in leads]
        short = services.config.queue.short_abandon_seconds
        report = await build_report(session, period, teams, tz, now, short)
        await add_survey(session, report, services.config)
        await add_first_line(session, report, services.config)
    queued = 0
    for (team, name, mailbox), figures in zip(leads, report.teams, strict=True):
        async with services.sessions() as session:
            session.add(
                OutboxMail(
                    key=f"weekly:{team}:{period.label}",
                    recipient=mailbox,
                    subject=f"Stuurinformatie {name}, week {period.label}",
                    body=to_text(report, figures),
                )
            )
            try:
                await session.commit()
                queued += 1
            except IntegrityError:
                await session.rollback()  # queued before: exactly once
    if queued:
        log.info("weekly report %s queued for %d team leads", period.label, queued)
    return queued


async def run(services: Services) -> None:
    # Checking every ten minutes is cheap (one insert that usually hits the unique key) and
    # sends the mail early on Monday, or soon after a restart that missed Monday morning.
    await every(CHECK_SECONDS, lambda: queue_weekly(services), what="the weekly report", logger=log)
