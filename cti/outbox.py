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
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib
from sqlalchemy import or_, select, update

from bereik.config import Mail
from bereik.services import Services
from cti.store.models import OutboxMail

log = logging.getLogger("bereik.outbox")

CLAIM_SECONDS = 120
MAX_BACKOFF_SECONDS = 3600
BATCH = 20
SMTP_TIMEOUT = 20


def backoff(attempts: int, base: float) -> float:
    """Seconds until the next try after ``attempts`` failed ones."""
    return float(min(MAX_BACKOFF_SECONDS, base * 2 ** max(0, attempts - 1)))


async def claim(services: Services, now: datetime, owner_until: datetime) -> list[OutboxMail]:
    """Rows due now that this process has claimed (see the module docstring)."""
    claimed: list[OutboxMail] = []
    async with services.sessions() as session:
        due = await session.execute(
            select(OutboxMail.id)
            .where(
                OutboxMail.sent_at.is_(None),
                OutboxMail.next_attempt_at <= now,
                or_(OutboxMail.claimed_until.is_(None), OutboxMail.claimed_until < now),
            )
            .order_by(OutboxMail.next_attempt_at, OutboxMail.id)
            .limit(BATCH)
        )
        for mail_id in list(due.scalars()):
            result = await session.execute(
                update(OutboxMail)
                .where(
                    OutboxMail.id == mail_id,
                    OutboxMail.sent_at.is_(None),
                    or_(OutboxMail.claimed_until.is_(None), OutboxMail.claimed_until < now),
                )
                .values(claimed_until=owner_until)
            )
            await session.commit()
            if result.rowcount == 1:  # type: ignore[attr-defined]
                mail = await session.get(OutboxMail, mail_id)
                if mail is not None:
                    claimed.append(mail)
    return claimed


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


async def deliver(settings: Mail, msg: EmailMessage) -> None:
    await aiosmtplib.send(
        msg,
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.username or None,
        password=settings.password or None,
        start_tls=settings.use_tls,
        timeout=SMTP_TIMEOUT,
    )


async def send_due(services: Services, now: datetime | None = None) -> int:
    """Send every mail due now; returns how many were sent."""
    settings = services.config.mail
    now = now or datetime.now(UTC)
    sent = 0
    for mail in await claim(services, now, now + timedelta(seconds=CLAIM_SECONDS)):
        try:
            await deliver(settings, message(mail, settings))
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            attempts = mail.attempts + 1
            delay = backoff(attempts, settings.retry_seconds)
            log.warning(
                "mail %s to %s not sent (attempt %d, next in %.0f s): %s",
                mail.key,
                mail.recipient,
                attempts,
                delay,
                exc,
            )
            await _finish(
                services,
                mail.id,
                attempts=attempts,
                error=f"{type(exc).__name__}: {exc}",
                next_at=datetime.now(UTC) + timedelta(seconds=delay),
            )
            continue
        await _finish(services, mail.id, attempts=mail.attempts + 1, sent_at=datetime.now(UTC))
        log.info("mail %s sent to %s", mail.key, mail.recipient)
        sent += 1
    return sent


async def _finish(
    services: Services,
    mail_id: int,
    *,
    attempts: int,
    sent_at: datetime | None = None,
    error: str = "",
    next_at: datetime | None = None,
) -> None:
    values: dict[str, object] = {"attempts": attempts, "claimed_until": None}
    if sent_at is not None:
        values.update(sent_at=sent_at, last_error="")
    else:
        values.update(last_error=error[:2000], next_attempt_at=next_at)
    async with services.sessions() as session:
        await session.execute(update(OutboxMail).where(OutboxMail.id == mail_id).values(**values))
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
