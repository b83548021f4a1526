"""Virtual hold: a callback that keeps the caller's place in the KCC's line.

The caller pressed 1 and confirmed a number (agi/handlers/queue.py); a ``virtual_holds`` row
keeps the caller's original arrival priority. This worker puts a placeholder in the line
for it: an AMI Originate of ``Local/<id>-<prio>-<since>-<number>@bereik-vhold-line``, whose
second half waits in ``Queue(kcc)`` with the original ``QUEUE_PRIO``, so it is served in
order of original entry together with the live callers, and only when an agent is free:
there are never more callbacks in progress than free agents. When an agent answers the
placeholder, the first half goes on in ``bereik-vhold-dial``: it rings the citizen
through the trunk showing the main number, with the agent already on the line.

The dialplan reports each stage as a UserEvent ``BereikVirtualHold`` (Stage: made, then
the citizen's DIALSTATUS); a placeholder that never got an agent ends in a failed
OriginateResponse. Every state change is a guarded UPDATE on the row's status, so each
callback is placed once per attempt and reached at most once, also across restarts.

Placing is a claim: ``pending → placing`` (with ``next_at`` as the claim's end) before the
Originate, ``placing → queued`` after Asterisk took it. With several processes, one that
dies in between leaves a claim that runs out; another process then asks Asterisk whether
the placeholder exists (``CoreShowChannels``): if it does, the Originate was carried out
and the row becomes ``queued``; if not, it was never sent (a placeholder that ended would
have moved the row by its events) and is placed now. So each attempt is originated once.
After ``callback_attempts`` tries without reaching the citizen the KCC gets a hopper
(2-working-day clock, mailed once through the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from panoramisk.message import Message
from sqlalchemy import Table, select, update

from cti.ami.bus import reads
from cti.ami.channels import VHOLD_PLACEHOLDER
from cti.ami.client import AmiError, AmiTimeout
from cti.hoppers.service import HopperError, callback_number, create_hopper
from cti.privacy import mask_numbers_in
from cti.queue import service
from cti.services import Services
from cti.store.db import Sessions
from cti.store.faults import set_aside, store_or_set_aside, until_stored
from cti.store.models import QueueCall, VirtualHold

log = logging.getLogger("bereik.queue")

VHOLDS = cast(Table, VirtualHold.__table__)
QUEUE_CALLS = cast(Table, QueueCall.__table__)
CHECK_SECONDS = 1.0
# With no callback due, the worker reads the table this seldom (it used to read it every
# second, calls or not). A callback this process asks for or sends back to wait (a request,
# a try that did not reach the citizen) wakes it at once (`wake`); one it placed and left
# waiting is looked at again when its time comes. What this bounds: a callback another
# process asked for and could not place itself (it stopped in between) waits at most this
# long for this one.
IDLE_CHECK_SECONDS = 5.0
MIN_CHECK_SECONDS = 0.1
# What the set_aside table calls this writer's work (cti/store/faults.py).
SOURCE = "virtual hold events"
ACTION_PREFIX = "vhold-"
# How long a process's claim on a callback it is placing lasts; far longer than an
# Originate's answer and the placeholder's first event take.
PLACING_SECONDS = 15.0
# The states in which the placeholder may exist (placing: sent, perhaps, not yet marked).
PLACED = ("placing", "queued")


async def request(
    services: Services, uniqueid: str, number: str, priority: int, now: datetime
) -> bool:
    """The caller confirmed: their stay ends as "callback", a row waits for its turn.
    False when this call already has one (a second press of 1 changes nothing).

    Raises HopperError for a number the callback rule refuses (paid, abroad): no row, and
    the caller's stay in line goes on."""
    number = callback_number(number, services.config.callbacks.allowed_prefixes)
    async with services.sessions() as session, session.begin():
        if await session.scalar(
            select(VirtualHold.id).where(VirtualHold.call_uniqueid == uniqueid)
        ):
            return False
        stay = (
            await session.execute(select(QueueCall).where(QueueCall.uniqueid == uniqueid))
        ).scalar_one_or_none()
        arrived = stay.joined_at if stay is not None else now
        session.add(
            VirtualHold(
                queue=service.KCC_QUEUE,
                call_uniqueid=uniqueid,
                number=number,
                priority=priority,
                arrived_at=arrived,
                requested_at=now,
                status="pending",
                attempts=0,
                next_at=now,
                agent="",
            )
        )
        if stay is not None and not stay.outcome:
            stay.outcome, stay.left_at = "callback", now
            stay.wait_seconds = round((now - arrived).total_seconds(), 3)
    wake(services)  # committed: this process's worker places it now
    metrics = services.metrics.queue
    metrics.virtual_hold.labels(service.KCC_QUEUE, "offered").inc()
    if stay is not None:
        metrics.offered.labels(service.KCC_QUEUE).inc()
    return True


def placeholder_exten(row: VirtualHold) -> str:
    """What the placeholder's Local channel dials: id, priority, arrival, number."""
    return f"{row.id}-{row.priority}-{int(row.arrived_at.timestamp())}-{row.number}"


async def place_due(services: Services, now: datetime | None = None) -> int:
    """Put every due callback's placeholder in the line; how many were placed."""
    placed, _ = await _place_due(services, now or datetime.now(UTC))
    return placed


async def _place_due(services: Services, now: datetime) -> tuple[int, float]:
    """(placed, seconds until the worker should look again)."""
    ami = services.ami
    if ami is None or not ami.connected:
        return 0, CHECK_SECONDS  # no read: looked at again soon after the connect
    async with services.sessions() as session:
        waiting = list(
            (
                await session.execute(
                    select(VirtualHold)
                    .where(VirtualHold.status.in_(("pending", "placing")))
                    .order_by(VirtualHold.priority.desc())
                )
            ).scalars()
        )
    # Those not due yet (a retry later, a claim still running) say when to look again.
    due = [row for row in waiting if row.next_at <= now]
    later = [(row.next_at - now).total_seconds() for row in waiting if row.next_at > now]
    again = min([IDLE_CHECK_SECONDS, *later])
    if any(row.status == "placing" for row in due):
        # Claims of a process that died: was their Originate carried out?
        live = await _placeholders(services)
        for row in [r for r in due if r.status == "placing" and r.id in live]:
            await _move(services, row.id, "placing", "queued", when=row.next_at)
            log.info("virtual hold %s: placed by a process that stopped", row.id)
        due = [r for r in due if r.status == "pending" or r.id not in live]
    placed = 0
    config = services.config
    claim_until = now + timedelta(seconds=PLACING_SECONDS)
    for row in due:
        # A run-out claim is taken over only if nobody renewed it meanwhile.
        when = row.next_at if row.status == "placing" else None
        if not await _move(services, row.id, row.status, "placing", when=when, next_at=claim_until):
            continue  # another process took it
        if when is not None:
            log.info("virtual hold %s: its claim ran out unplaced; placing it now", row.id)
        try:
            # Rows written before the rule held at `request` must not be dialled either.
            callback_number(row.number, config.callbacks.allowed_prefixes)
        except HopperError as exc:
            log.error("virtual hold %s not placed: %s", row.id, mask_numbers_in(str(exc)))
            await _move(services, row.id, "placing", "failed")
            continue
        try:
            await ami.action(
                {
                    "Action": "Originate",
                    "Channel": f"Local/{placeholder_exten(row)}@bereik-vhold-line/n",
                    "Context": "bereik-vhold-dial",
                    "Exten": row.number,
                    "Priority": "1",
                    # The placeholder may wait as long as a caller may.
                    "Timeout": str((config.queue.max_wait_seconds + 60) * 1000),
                    "CallerID": f'"Terugbellen" <{row.number}>',
                    "Variable": f"BEREIK_VHOLD={row.id}",
                    "Async": "true",
                    "ActionID": f"{ACTION_PREFIX}{row.id}-{row.attempts + 1}",
                }
            )
        except AmiTimeout:
            # Perhaps carried out: the claim runs out and Asterisk's channels decide.
            log.warning("virtual hold %s: no answer to the Originate; checked later", row.id)
            continue
        except AmiError as exc:
            log.warning("virtual hold %s not placed now (%s); tried again", row.id, exc)
            await _move(services, row.id, "placing", "pending", next_at=now)
            again = CHECK_SECONDS
            continue
        await _move(services, row.id, "placing", "queued")
        placed += 1
    return placed, again


async def _placeholders(services: Services) -> set[int]:
    """Ids of the virtual holds whose placeholder channel exists in Asterisk now."""
    assert services.ami is not None
    channels = await services.ami.action_list({"Action": "CoreShowChannels"}, timeout=10)
    ids = set()
    for channel in channels:
        found = VHOLD_PLACEHOLDER.match(str(channel.get("Channel", "")))
        if found:
            ids.add(int(found["id"]))
    return ids


async def _move(
    services: Services,
    row_id: int,
    old: str | tuple[str, ...],
    new: str,
    when: datetime | None = None,
    **values: Any,
) -> bool:
    """One guarded state change: only from `old` (and, with `when`, only if `next_at` is
    still that: a claim renewed by another process in the meantime is left alone)."""
    olds = (old,) if isinstance(old, str) else old
    condition = [VHOLDS.c.id == row_id, VHOLDS.c.status.in_(olds)]
    if when is not None:
        condition.append(VHOLDS.c.next_at == when)
    async with services.sessions() as session, session.begin():
        result = await session.execute(
            update(VHOLDS).where(*condition).values(status=new, **values)
        )
        return int(getattr(result, "rowcount", 0) or 0) == 1


class VirtualHoldEvents:
    """Stage events from the dialplan and the Originate's end, applied in order. Made once
    by `bereik serve`: ``on_event`` on the bus, ``run`` as a worker."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.events: asyncio.Queue[Message] = asyncio.Queue()
        # Virtual holds with an event set aside: their later events follow it there, in
        # order (applied alone they would find the row in the stage before and do nothing;
        # `bereik events retry` replays them in order after it).
        self.set_aside_rows: set[int] = set()

    @reads("UserEvent", "OriginateResponse")
    def on_event(self, event: Message) -> None:
        name = event.get("Event")
        if (name == "UserEvent" and event.get("UserEvent") == "BereikVirtualHold") or (
            name == "OriginateResponse" and str(event.get("ActionID", "")).startswith(ACTION_PREFIX)
        ):
            self.events.put_nowait(event)

    async def apply(self, event: Mapping[str, Any]) -> None:
        metrics = self.services.metrics.queue
        queue = service.KCC_QUEUE
        now = datetime.now(UTC)
        if event.get("Event") == "OriginateResponse":
            if event.get("Response") == "Success":
                return
            # The placeholder never got an agent (or could not be made): one try used.
            row_id = int(str(event.get("ActionID", "")).removeprefix(ACTION_PREFIX).split("-")[0])
            await self._failed(row_id, PLACED, now, "no agent")
            return
        row_id = int(str(event.get("Id", "0")) or 0)
        stage = str(event.get("Stage", ""))
        if stage == "made":
            agent = str(event.get("Agent", ""))
            if await _move(self.services, row_id, PLACED, "calling", agent=agent[:32]):
                metrics.virtual_hold.labels(queue, "made").inc()
        elif stage == "ANSWER":
            if await _move(self.services, row_id, "calling", "reached", reached_at=now):
                metrics.virtual_hold.labels(queue, "reached").inc()
                log.info("virtual hold %s: citizen reached", row_id)
        else:
            await self._failed(row_id, "calling", now, stage)

    async def _failed(
        self, row_id: int, current: str | tuple[str, ...], now: datetime, why: str
    ) -> None:
        config = self.services.config.queue
        async with self.services.sessions() as session:
            row = await session.get(VirtualHold, row_id)
        if row is None or row.status not in ((current,) if isinstance(current, str) else current):
            return
        current = row.status
        attempts = row.attempts + 1
        if attempts < config.callback_attempts:
            later = now + timedelta(seconds=config.callback_retry_seconds)
            if await _move(
                self.services, row_id, current, "pending", attempts=attempts, next_at=later
            ):
                wake(self.services)  # to look again at `later`, not at its idle pace
                log.info(
                    "virtual hold %s: try %d not reached (%s); again at %s",
                    row_id,
                    attempts,
                    why,
                    later.isoformat(),
                )
            return
        if not await _move(self.services, row_id, current, "failed", attempts=attempts):
            return
        try:
            hopper = await create_hopper(
                self.services,
                team_id=service.KCC_QUEUE,
                caller=row.number,
                reason="no_answer",
                note=f"Terugbellen met behoud van plaats: {attempts} pogingen, niet bereikt.",
                call_uniqueid=row.call_uniqueid,
                actor="exchange",
            )
        except HopperError as exc:
            log.error("virtual hold %s not reached and no hopper made: %s", row_id, exc)
            return
        async with self.services.sessions() as session, session.begin():
            await session.execute(
                update(VHOLDS).where(VHOLDS.c.id == row_id).values(hopper_id=hopper.id)
            )
        log.info(
            "virtual hold %s: not reached in %d tries; KCC hopper %s", row_id, attempts, hopper.id
        )

    async def run(self) -> None:
        """Apply each event in order by the store's policy (cti/store/faults.py): waited
        out while the store is down, set aside when it refuses the event."""
        while True:
            event = await self.events.get()
            row_id = _row_of(event)
            if row_id in self.set_aside_rows:
                error = RuntimeError(f"an earlier event of virtual hold {row_id} was set aside")
                await set_aside(
                    self.services.sessions, SOURCE, dict(event), error, self.services.metrics, log
                )
                continue
            stored = await store_or_set_aside(
                self.services.sessions,
                SOURCE,
                dict(event),
                functools.partial(self.apply, event),
                metrics=self.services.metrics,
                logger=log,
            )
            if not stored and row_id:
                self.set_aside_rows.add(row_id)


def _row_of(event: Mapping[str, Any]) -> int:
    """The virtual hold an event is about (0: none that can be told; `apply` refuses it,
    so it is set aside on its own)."""
    if event.get("Event") == "OriginateResponse":
        raw = str(event.get("ActionID", "")).removeprefix(ACTION_PREFIX).split("-")[0]
    else:
        raw = str(event.get("Id", ""))
    return int(raw) if raw.isdigit() else 0


async def replay(services: Services, payload: Mapping[str, Any]) -> None:
    """`bereik events retry`: apply one set-aside virtual-hold event."""
    await VirtualHoldEvents(services).apply(payload)


async def place_worker(services: Services) -> None:
    """Worker: put due callbacks' placeholders in the line as they come due, at once when
    this process asked for one, and at least every IDLE_CHECK_SECONDS. A store that is
    down is waited out; any other fault is the supervisor's (cti/supervisor.py)."""
    if not (service.queue_enabled(services) and services.config.queue.virtual_hold):
        return
    woken = _woken(services)
    while True:
        woken.clear()  # a wake from here on is for a row this round may not have seen
        _, again = await until_stored(
            lambda: _place_due(services, datetime.now(UTC)),
            what="the virtual holds due",
            logger=log,
        )
        with contextlib.suppress(TimeoutError):
            # A floor: a row that comes due in a moment is not read for in a tight loop.
            await asyncio.wait_for(woken.wait(), max(again, MIN_CHECK_SECONDS))


# Per store (a test makes several in one process): set when this process asked for a
# callback or sent one back to wait, so its worker looks now.
_wakes: weakref.WeakKeyDictionary[Sessions, asyncio.Event] = weakref.WeakKeyDictionary()


def _woken(services: Services) -> asyncio.Event:
    found = _wakes.get(services.sessions)
    if found is None:
        found = _wakes[services.sessions] = asyncio.Event()
    return found


def wake(services: Services) -> None:
    """This process's worker looks at the virtual holds now."""
    _woken(services).set()
