"""The callback clock's timers (a WORKER): reminders and escalations, derived from the DB.

Nothing is kept in memory between checks. Every ``callbacks.check_seconds`` the worker
looks at the open hoppers and queues, in the ``outbox`` table, what is due:

* ``reminder:<hopper id>`` to the team's group mailbox, from ``callbacks.reminder_hour``
  on the morning of the deadline day until the deadline ("verloopt vandaag");
* ``escalation:<hopper id>:lead`` to the team lead's mailbox (the group mailbox when the
  team has no lead mailbox) and ``escalation:<hopper id>:kcc`` to
  ``kcc.supervisor_mailbox``, once the deadline has passed.

Exactly once: the outbox key is unique, so when two processes (or one after a restart)
queue the same mail, the database refuses the second row and the IntegrityError is
taken as "already queued". The outbox worker (cti/outbox.py) sends each row once. A
hopper closed before its timer is due gets nothing; a reminder whose deadline passed
while every process was down is skipped, because the escalation says more.

The same loop marks click-to-call attempts whose outcome was never seen as failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from cti.callback_clock import is_overdue, reminder_time
from cti.callbacks.clicktocall import expire_stale_attempts
from cti.hoppers.service import opening_hours, team_info
from cti.services import Services
from cti.store.faults import set_aside, store_or_set_aside, until_stored
from cti.store.models import Hopper, OutboxMail, SetAside
from dialplan.config import Config

log = logging.getLogger("bereik.callbacks.scheduler")

# A reminder is due at most a day before its deadline (reminder hour 00:00, closing 24:00).
REMINDER_WINDOW = timedelta(days=1, hours=2)
# What the set_aside table calls this worker's work (cti/store/faults.py).
SOURCE = "callback reminders"


@dataclass(frozen=True)
class Due:
    key: str
    recipient: str
    subject: str
    body: str


def _masked(number: str) -> str:
    # Mail leaves the exchange: the number is in the linked hopper, not in every inbox.
    return number[:2] + "*" * max(len(number) - 6, 0) + number[-4:] if len(number) > 6 else number


def _link(config: Config, hopper_id: int) -> str:
    base = config.server.public_url.rstrip("/")
    return f"{base}/hoppers/{hopper_id}" if base else f"terugbelverzoek #{hopper_id}"


def due_mails(hopper: Hopper, config: Config, now: datetime) -> list[Due]:
    """What this open hopper needs mailed at ``now`` (keys decide whether it already was)."""
    if hopper.status != "open" or not hopper.counts_for_norm:
        return []
    hours = opening_hours(config)
    team = team_info(config, hopper.team_id)
    local_deadline = hopper.deadline.astimezone(hours.tz)
    summary = (
        f"Terugbelverzoek #{hopper.id} voor {team.name}\n"
        f"Terugbellen:  {_masked(hopper.caller)}\n"
        f"Aangemaakt:   {hopper.created_at.astimezone(hours.tz):%d-%m-%Y %H:%M}\n"
        f"Uiterlijk:    {local_deadline:%d-%m-%Y %H:%M}\n"
        f"Opgepakt door: {hopper.claimed_by or 'nog niemand'}\n"
        f"\n{_link(config, hopper.id)}\n"
    )
    if is_overdue(hopper.deadline, now):
        subject = (
            f"Termijn verstreken: terugbelverzoek #{hopper.id} ({team.name}), "
            f"uiterlijk {local_deadline:%d-%m %H:%M}"
        )
        body = (
            "Dit terugbelverzoek is niet binnen de servicenorm afgehandeld.\n"
            "Wil je zorgen dat de burger zo snel mogelijk wordt teruggebeld?\n\n" + summary
        )
        mails = [Due(f"escalation:{hopper.id}:lead", team.mailbox, subject, body)]
        lead = config.team(hopper.team_id).lead_mailbox if hopper.team_id != "kcc" else ""
        if lead:
            mails[0] = Due(f"escalation:{hopper.id}:lead", lead, subject, body)
        # The KCC's own hoppers: the supervisor is already the "lead"; one mail is enough.
        if config.kcc.supervisor_mailbox and config.kcc.supervisor_mailbox != mails[0].recipient:
            mails.append(
                Due(f"escalation:{hopper.id}:kcc", config.kcc.supervisor_mailbox, subject, body)
            )
        return [m for m in mails if m.recipient]
    if now >= reminder_time(hopper.deadline, hours, config.callbacks.reminder_hour):
        subject = (
            f"Verloopt vandaag om {local_deadline:%H:%M}: terugbelverzoek #{hopper.id} "
            f"({team.name})"
        )
        body = "Dit terugbelverzoek moet vandaag nog worden teruggebeld.\n\n" + summary
        return [Due(f"reminder:{hopper.id}", team.mailbox, subject, body)] if team.mailbox else []
    return []


async def _queued(services: Services, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    async with services.sessions() as session:
        result = await session.execute(select(OutboxMail.key).where(OutboxMail.key.in_(keys)))
        return set(result.scalars())


async def queue_once(services: Services, mail: Due) -> bool:
    """Insert one outbox row; False when another process (or an earlier run) already did."""
    try:
        async with services.sessions() as session, session.begin():
            session.add(
                OutboxMail(
                    key=mail.key, recipient=mail.recipient, subject=mail.subject, body=mail.body
                )
            )
    except IntegrityError:
        if await _queued(services, [mail.key]):
            return False  # the unique key: queued already
        raise  # refused for another reason: the store's policy decides (check)
    return True


async def _queue_or_skip(services: Services, mail: Due, queued: list[str]) -> None:
    if await queue_once(services, mail):
        queued.append(mail.key)


async def _set_aside_keys(services: Services) -> set[str]:
    async with services.sessions() as session:
        payloads = await session.execute(
            select(SetAside.payload).where(
                SetAside.source == SOURCE, SetAside.replayed_at.is_(None)
            )
        )
        return {str(payload.get("key", "")) for payload in payloads.scalars()}


def _plan_key(hopper_id: int) -> str:
    """The set-aside key of a hopper whose reminders could not be worked out."""
    return f"plan:{hopper_id}"


async def replay(services: Services, payload: Mapping[str, Any]) -> None:
    """`bereik events retry`: queue one set-aside reminder (once, by its key); for a
    hopper whose reminders could not be worked out, work them out again and queue them
    (raises, and it stays aside, while they still cannot be)."""
    if "hopper" not in payload:
        await queue_once(services, Due(**payload))
        return
    async with services.sessions() as session:
        hopper = await session.get(Hopper, int(payload["hopper"]))
    if hopper is None:
        return  # purged meanwhile: nothing left to remind of
    for mail in due_mails(hopper, services.config, datetime.now(UTC)):
        await queue_once(services, mail)


async def check(services: Services, now: datetime | None = None) -> list[str]:
    """One pass: queue every due reminder and escalation; return the keys queued now."""
    now = now or datetime.now(UTC)
    async with services.sessions() as session:
        result = await session.execute(
            select(Hopper).where(
                Hopper.status == "open",
                Hopper.counts_for_norm.is_(True),
                Hopper.deadline <= now + REMINDER_WINDOW,
            )
        )
        hoppers = list(result.scalars())
    due: list[Due] = []
    unplanned: list[tuple[Hopper, Exception]] = []
    for hopper in hoppers:
        try:
            due.extend(due_mails(hopper, services.config, now))
        except Exception as exc:  # the store's policy below: set aside, once
            # One hopper of a team since removed from the config, say: trying again on
            # every pass fails the same way (and logged a traceback every pass), and
            # dropping it would leave the team without a reminder. It is set aside with
            # its error, counted, alerted, and `bereik events retry` works it out again.
            unplanned.append((hopper, exc))
    if unplanned:
        aside = await _set_aside_keys(services)
        for hopper, error in unplanned:
            if _plan_key(hopper.id) not in aside:  # waiting for a replay, not again
                payload = {"key": _plan_key(hopper.id), "hopper": hopper.id}
                await set_aside(services.sessions, SOURCE, payload, error, services.metrics, log)
    already = await _queued(services, [mail.key for mail in due])
    if len(already) < len(due):
        already |= await _set_aside_keys(services)  # waiting for a replay, not again
    queued: list[str] = []
    for mail in due:
        if mail.key in already:
            continue
        # By the store's policy: a reminder the database refuses is set aside, once.
        stored = await store_or_set_aside(
            services.sessions,
            SOURCE,
            dataclasses.asdict(mail),
            functools.partial(_queue_or_skip, services, mail, queued),
            metrics=services.metrics,
            logger=log,
        )
        if not stored:
            log.error("reminder %s set aside", mail.key)
    if queued:
        log.info("queued %d reminder/escalation mails: %s", len(queued), ", ".join(queued))
    return queued


async def run(services: Services) -> None:
    """Each pass derives every reminder again from the hoppers. A store that is down is
    waited out (cti/store/faults.py); any other fault is the supervisor's."""
    interval = services.config.callbacks.check_seconds

    async def one_pass() -> None:
        await check(services)
        await expire_stale_attempts(services)

    while True:
        await until_stored(one_pass, what="the callback scheduler's pass", logger=log)
        await asyncio.sleep(interval)
