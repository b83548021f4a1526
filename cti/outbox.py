"""The outbox worker: sends queued mails (group mailboxes) by SMTP, each once.

Mails are written to the ``outbox`` table in the same transaction as what they report
(a hopper), so nothing is lost if the process dies; this worker delivers them.

Claiming: a sender marks a batch of due rows with its own ``claimed_until``. On
PostgreSQL the rows are picked with ``SELECT ... FOR UPDATE SKIP LOCKED``, so several
``bereik serve`` processes take disjoint batches without waiting on each other; on
SQLite (one writer at a time) the UPDATE only matches a row that is still unclaimed. Only
the process whose mark is on a row sends it, so two processes never send one mail twice.

Each mail is marked sent in its own short transaction right after the SMTP server took
it, so a process killed in the middle of a round re-sends nothing it had sent. The one
window left is between the server's "250 OK" and that commit: a kill exactly there sends
that one mail again after the claim runs out (at-least-once, which for a notification
beats losing it; the stable Message-ID lets a mail client drop it). A round stops
starting new sends well before its claim runs out and gives back what it did not send.

An SMTP failure keeps the row, counts the attempt and schedules the next one with
exponential backoff (``mail.retry_seconds`` doubling, capped at one hour); an SMTP
outage therefore only delays mail.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from datetime import UTC, datetime, timedelta
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.text import MIMEText
from email.utils import make_msgid
from typing import cast

import aiosmtplib
from sqlalchemy import ColumnElement, Connection, Table, bindparam, or_, select, update

from cti.services import Services
from cti.store.faults import until_stored
from cti.store.models import OutboxMail
from dialplan.config import Mail

log = logging.getLogger("bereik.outbox")

OUTBOX = cast(Table, OutboxMail.__table__)

# A claim outlives a round: a round starts no send after SEND_WINDOW seconds, and each
# send ends within SMTP_TIMEOUT, so a live sender always finishes before its claim runs
# out. A killed sender's rows wait at most CLAIM_SECONDS before another takes them.
CLAIM_SECONDS = 60
SEND_WINDOW = 30
MAX_BACKOFF_SECONDS = 3600
BATCH = 100
SMTP_TIMEOUT = 20


def backoff(attempts: int, base: float) -> float:
    """Seconds until the next try after ``attempts`` failed ones."""
    return float(min(MAX_BACKOFF_SECONDS, base * 2 ** max(0, attempts - 1)))


def _unclaimed(now: datetime) -> ColumnElement[bool]:
    return or_(OUTBOX.c.claimed_until.is_(None), OUTBOX.c.claimed_until < now)


# Updates here never touch rows loaded in their session: synchronize_session=False spares
# the ORM's evaluation of each WHERE against the session (0.5 of 2.0 ms of CPU for an
# update in its own transaction, measured on SQLite).


async def claim(services: Services, now: datetime, owner_until: datetime) -> list[OutboxMail]:
    """Rows due now that this process has claimed (see the module docstring).

    The rows whose ``claimed_until`` then carries this process's own mark are ours (the
    UPDATE returns them); a row another sender took first keeps that one's mark. Through
    the call path's writer (cti/store/writer.py): the outbox runs beside every hopper.
    """
    return await services.writer.transaction(
        functools.partial(_claim, now=now, owner_until=owner_until)
    )


def _claim(conn: Connection, *, now: datetime, owner_until: datetime) -> list[OutboxMail]:
    due = list(
        conn.execute(
            select(OUTBOX.c.id)
            .where(
                OUTBOX.c.sent_at.is_(None),
                OUTBOX.c.next_attempt_at <= now,
                _unclaimed(now),
            )
            .order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.id)
            .limit(BATCH)
            # PostgreSQL: lock the picked rows, skip those another sender holds.
            # SQLite renders no FOR UPDATE; the guarded UPDATE below decides there.
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    if not due:
        return []
    mine = conn.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id.in_(due), OUTBOX.c.sent_at.is_(None), _unclaimed(now))
        .values(claimed_until=owner_until)
        .returning(*OUTBOX.c)
    )
    # Plain objects, in no session: the round reads their fields only.
    return sorted((OutboxMail(**row._mapping) for row in mine), key=lambda mail: mail.id)


def _owner_mark(now: datetime) -> datetime:
    """The claim's end, with random microseconds so two senders never share a mark."""
    return now + timedelta(seconds=CLAIM_SECONDS, microseconds=secrets.randbelow(1_000_000))


# The body's charset: UTF-8 in quoted-printable, readable as it is for Dutch text (what
# EmailMessage.set_content chose), set once rather than worked out per mail.
_UTF8 = Charset("utf-8")
_UTF8.header_encoding = QP
_UTF8.body_encoding = QP


def message(mail: OutboxMail, settings: Mail) -> Message:
    """The mail for one outbox row, built with the compat32 classes: EmailMessage parses
    every header through its registry and works out each body's encoding, which cost more
    CPU than the SMTP exchange (bench/README.md, profile per part, outbox)."""
    # A Charset object is what MIMEText takes at runtime (typeshed says a name only).
    msg = MIMEText(mail.body, "plain", _UTF8)  # type: ignore[arg-type]
    msg["From"] = settings.sender
    msg["To"] = mail.recipient
    msg["Subject"] = _header(mail.subject)
    # Stable per outbox row, so a mail server or client can drop a rare duplicate.
    msg["Message-ID"] = make_msgid(idstring=f"bereik-outbox-{mail.id}-{mail.key}")
    msg["X-Bereik-Outbox"] = mail.key
    return msg


def _header(text: str) -> str:
    """A header as it is when ASCII, else RFC 2047 encoded words (a team's name)."""
    return text if text.isascii() else Header(text, _UTF8).encode()


def _connection(settings: Mail) -> aiosmtplib.SMTP:
    """The SMTP connection as `mail.starttls` says (mails carry callers' numbers):

    * ``auto``: STARTTLS whenever the server offers it (opportunistic, as mail servers do
      among themselves: the certificate is not checked, which still keeps the mails from
      anyone who only listens);
    * ``require``: STARTTLS or nothing is sent (the mail waits, with the error on its
      row), the server's certificate verified against the system's CAs or `mail.ca_file`;
    * ``off``: never (a relay on this machine).
    """
    mode = settings.tls_mode
    return aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.username or None,
        password=settings.password or None,
        # None: upgrade if offered; True: required; False: never.
        start_tls={"auto": None, "require": True, "off": False}[mode],
        validate_certs=mode == "require",
        cert_bundle=settings.ca_file or None,
        timeout=SMTP_TIMEOUT,
    )


async def send_due(services: Services, now: datetime | None = None) -> int:
    """Send the mails due now over one SMTP connection; returns how many were sent."""
    settings = services.config.mail
    now = now or datetime.now(UTC)
    mark = _owner_mark(now)
    mails = await claim(services, now, mark)
    if not mails:
        return 0
    stop_at = asyncio.get_running_loop().time() + SEND_WINDOW
    sent = 0
    unsent: list[OutboxMail] = []
    try:
        async with _connection(settings) as smtp:
            for index, mail in enumerate(mails):
                if asyncio.get_running_loop().time() > stop_at:
                    unsent = mails[index:]  # a slow server: give the rest back
                    break
                try:
                    await smtp.send_message(message(mail, settings))
                except aiosmtplib.SMTPResponseException as exc:
                    await _failed(services, mail, exc, mark)  # this mail refused; the others go on
                    continue
                await _sent(services, mail, mark)
                sent += 1
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        # The server is unreachable or the connection broke: what was not sent waits.
        async with services.sessions() as session:
            left = set(
                (
                    await session.execute(
                        select(OutboxMail.id).where(
                            OutboxMail.id.in_([m.id for m in mails]),
                            OutboxMail.sent_at.is_(None),
                            OutboxMail.claimed_until == mark,
                        )
                    )
                ).scalars()
            )
        for mail in mails:
            if mail.id in left:
                await _failed(services, mail, exc, mark)
    if unsent:
        await _release(services, unsent, mark)
    return sent


_MARK_SENT = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("p_id"), OUTBOX.c.claimed_until == bindparam("p_mark"))
    .values(
        attempts=OUTBOX.c.attempts + 1,
        claimed_until=None,
        sent_at=bindparam("p_at"),
        last_error="",
    )
)


async def _sent(services: Services, mail: OutboxMail, mark: datetime) -> None:
    """Record one delivery at once: a kill after this never sends the mail again. One per
    mail, through the call path's writer (a statement built once, one hop to the driver)."""
    await services.writer.transaction(
        functools.partial(_mark_sent, mail_id=mail.id, mark=mark, at=datetime.now(UTC))
    )
    log.info("mail %s sent", mail.key)


def _mark_sent(conn: Connection, *, mail_id: int, mark: datetime, at: datetime) -> None:
    conn.execute(_MARK_SENT, {"p_id": mail_id, "p_mark": mark, "p_at": at})


async def _failed(services: Services, mail: OutboxMail, exc: Exception, mark: datetime) -> None:
    """Count a failed attempt and schedule the next one (exponential backoff)."""
    attempts = mail.attempts + 1
    delay = backoff(attempts, services.config.mail.retry_seconds)
    log.warning(
        "mail %s to %s not sent (attempt %d, next in %.0f s): %s",
        mail.key,
        mail.recipient,
        attempts,
        delay,
        exc,
    )
    async with services.sessions() as session, session.begin():
        await session.execute(
            update(OutboxMail)
            .execution_options(synchronize_session=False)
            .where(OutboxMail.id == mail.id, OutboxMail.claimed_until == mark)
            .values(
                attempts=attempts,
                claimed_until=None,
                last_error=f"{type(exc).__name__}: {exc}"[:2000],
                next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay),
            )
        )


async def _release(services: Services, mails: list[OutboxMail], mark: datetime) -> None:
    """Give back claimed rows this round did not get to, for the next round (any process)."""
    async with services.sessions() as session, session.begin():
        await session.execute(
            update(OutboxMail)
            .execution_options(synchronize_session=False)
            .where(OutboxMail.id.in_([m.id for m in mails]), OutboxMail.claimed_until == mark)
            .values(claimed_until=None)
        )


async def run(services: Services) -> None:
    """The worker: poll often (a new hopper's mail goes out within a second or two).

    A store that is down is waited out (cti/store/faults.py); the mails stay in their
    rows. Any other fault raises: the supervisor restarts the outbox after its backoff,
    and the rows it had claimed are taken again once their claim runs out.
    """
    interval = min(1.0, services.config.mail.retry_seconds)
    while True:
        await until_stored(lambda: send_due(services), what="the outbox's round", logger=log)
        await asyncio.sleep(interval)
