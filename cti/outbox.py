"""The outbox worker: sends queued mails (group mailboxes) by SMTP, each exactly once.

Mails are written to the ``outbox`` table in the same transaction as what they report
(a hopper), so nothing is lost if the process dies; this worker delivers them.

Claiming: a sender first sets ``claimed_until`` on a row in an UPDATE that only matches
an unclaimed (or expired) row; only the process whose UPDATE changed the row sends it.
So two ``bereik serve`` processes on one database never send one mail twice. If a
sender dies mid-send the claim expires and another sends it: at-least-once in that rare
case, which for a notification mail beats losing it.

An SMTP failure keeps the row, counts the attempt and schedules the next one with
exponential backoff (``mail.retry_seconds`` doubling, capped at one hour); an SMTP
outage therefore only delays mail.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib
from sqlalchemy import or_, select, update

from cti.services import Services
from cti.store.models import OutboxMail
from dialplan.config import Mail

log = logging.getLogger("bereik.outbox")

CLAIM_SECONDS = 120
MAX_BACKOFF_SECONDS = 3600
BATCH = 100
SMTP_TIMEOUT = 20


def backoff(attempts: int, base: float) -> float:
    """Seconds until the next try after ``attempts`` failed ones."""
    return float(min(MAX_BACKOFF_SECONDS, base * 2 ** max(0, attempts - 1)))


async def claim(services: Services, now: datetime, owner_until: datetime) -> list[OutboxMail]:
    """Rows due now that this process has claimed (see the module docstring).

    One UPDATE claims the whole batch; the rows whose `claimed_until` then carries this
    process's own mark are ours (a row another sender took first keeps that one's mark).
    """
    async with services.sessions() as session:
        due = list(
            (
                await session.execute(
                    select(OutboxMail.id)
                    .where(
                        OutboxMail.sent_at.is_(None),
                        OutboxMail.next_attempt_at <= now,
                        or_(OutboxMail.claimed_until.is_(None), OutboxMail.claimed_until < now),
                    )
                    .order_by(OutboxMail.next_attempt_at, OutboxMail.id)
                    .limit(BATCH)
                )
            ).scalars()
        )
        if not due:
            return []
        await session.execute(
            update(OutboxMail)
            .where(
                OutboxMail.id.in_(due),
                OutboxMail.sent_at.is_(None),
                or_(OutboxMail.claimed_until.is_(None), OutboxMail.claimed_until < now),
            )
            .values(claimed_until=owner_until)
        )
        await session.commit()
        mine = await session.execute(
            select(OutboxMail)
            .where(OutboxMail.id.in_(due), OutboxMail.claimed_until == owner_until)
            .order_by(OutboxMail.id)
        )
        return list(mine.scalars())


def _owner_mark(now: datetime) -> datetime:
    """The claim's end, with random microseconds so two senders never share a mark."""
    return now + timedelta(seconds=CLAIM_SECONDS, microseconds=secrets.randbelow(1_000_000))


def message(mail: OutboxMail, settings: Mail) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.sender
    msg["To"] = mail.recipient
    msg["Subject"] = mail.subject
    # Stable per outbox row, so a mail server or client can drop a rare duplicate.
    msg["Message-ID"] = make_msgid(idstring=f"bereik-outbox-{mail.id}-{mail.key}")
    msg["X-Bereik-Outbox"] = mail.key
    msg.set_content(mail.body)
    return msg


def _connection(settings: Mail) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.username or None,
        password=settings.password or None,
        start_tls=settings.use_tls,
        timeout=SMTP_TIMEOUT,
    )


async def send_due(services: Services, now: datetime | None = None) -> int:
    """Send every mail due now over one SMTP connection; returns how many were sent."""
    settings = services.config.mail
    now = now or datetime.now(UTC)
    mails = await claim(services, now, _owner_mark(now))
    if not mails:
        return 0
    sent: list[int] = []
    failed: list[tuple[OutboxMail, Exception]] = []
    try:
        async with _connection(settings) as smtp:
            for mail in mails:
                try:
                    await smtp.send_message(message(mail, settings))
                    sent.append(mail.id)
                except aiosmtplib.SMTPResponseException as exc:
                    failed.append((mail, exc))  # this mail refused; the others go on
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        # The server is unreachable or the connection broke: what was not sent waits.
        done = set(sent) | {mail.id for mail, _ in failed}
        failed += [(mail, exc) for mail in mails if mail.id not in done]
    await _record(services, sent, failed)
    for mail_id in sent:
        log.info("mail %s sent", next(m.key for m in mails if m.id == mail_id))
    return len(sent)


async def _record(
    services: Services, sent: list[int], failed: list[tuple[OutboxMail, Exception]]
) -> None:
    """One transaction for the round: sent rows done, failed rows back off."""
    retry = services.config.mail.retry_seconds
    async with services.sessions() as session:
        if sent:
            await session.execute(
                update(OutboxMail)
                .where(OutboxMail.id.in_(sent))
                .values(
                    attempts=OutboxMail.attempts + 1,
                    claimed_until=None,
                    sent_at=datetime.now(UTC),
                    last_error="",
                )
            )
        for mail, exc in failed:
            attempts = mail.attempts + 1
            delay = backoff(attempts, retry)
            log.warning(
                "mail %s to %s not sent (attempt %d, next in %.0f s): %s",
                mail.key,
                mail.recipient,
                attempts,
                delay,
                exc,
            )
            await session.execute(
                update(OutboxMail)
                .where(OutboxMail.id == mail.id)
                .values(
                    attempts=attempts,
                    claimed_until=None,
                    last_error=f"{type(exc).__name__}: {exc}"[:2000],
                    next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay),
                )
            )
        await session.commit()


async def run(services: Services) -> None:
    """The worker: poll often (a new hopper's mail goes out within a second or two)."""
    interval = min(1.0, services.config.mail.retry_seconds)
    while True:
        try:
            await send_due(services)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A database hiccup must not end mail delivery for the life of the process.
            log.exception("outbox round failed; trying again")
            await asyncio.sleep(5)
        await asyncio.sleep(interval)
