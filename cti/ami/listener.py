"""The AMI listener: the call tracker fed from the event bus, persisted, and counted once.

Two halves, so the bus callback stays quick (it runs for every AMI event):

* ``subscribe`` (an AMI subscriber): feeds each event to ``CallTracker``, sets the
  ``bereik_calls_waiting`` gauge at once, and queues the tracker's effects;
* ``run`` (a worker): writes the effects to the ``calls`` table in order and counts the
  metrics. Every count is guarded by the row: ``answered_by`` is set once (then the call is
  counted as answered) and ``outcome`` is set once (then offered, abandoned and transfers are
  counted), with ``UPDATE ... WHERE outcome = ''``. A call seen twice, after an AMI reconnect
  or a restart of ``bereik serve``, finds its row already decided and is not counted again.

On every (re)connect the tracker is resynchronised from ``CoreShowChannels``: calls whose
channels vanished while we were away end with what was known; live ones are taken up. The
resync request travels through the event queue, so it is handled after the events of the
previous connection, in order.

Counters move when the call ends (offered, abandoned, transfers) or is first answered
(answered and the wait histogram); ``bereik_calls_waiting`` moves with every event.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from panoramisk.message import Message
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bereik.services import Services
from cti.ami.bus import EventBus
from cti.ami.client import AmiError
from cti.calls.tracker import KCC, Answered, CallTracker, Effect, Ended, Started
from cti.store.models import Call, Hopper

log = logging.getLogger("bereik.calls")

RESYNC_EVENT = "BereikResync"
EXTRA_KEY = "call_listener"
# IVR routes that are an outcome of their own when the caller reached nobody.
ROUTES = ("closed", "info")


class CallListener:
    def __init__(self, services: Services) -> None:
        config = services.config
        self.services = services
        self.tracker = CallTracker(
            main_number=config.exchange.main_number,
            kcc_number=config.kcc.number,
            team_numbers={team.number: team.id for team in config.teams},
        )
        self.effects: asyncio.Queue[Effect] = asyncio.Queue()
        self.written = 0
        self._waiting: dict[str, int] = {}

    # -- the bus side ------------------------------------------------------------------

    def on_event(self, event: Message) -> None:
        if event.get("Event") == RESYNC_EVENT:
            effects = self.tracker.resync(getattr(event, "channels", []))
            log.info("call tracker resynchronised: %d calls in progress", len(self.tracker.calls))
        else:
            effects = self.tracker.feed(event)
        for effect in effects:
            self.effects.put_nowait(effect)
        self._set_waiting()

    async def on_connected(self) -> None:
        """Ask Asterisk which channels exist; the answer is queued behind older events."""
        ami = self.services.ami
        if ami is None:
            return
        try:
            channels = await ami.action_list({"Action": "CoreShowChannels"}, timeout=10)
        except AmiError as exc:
            log.warning("CoreShowChannels failed (%s); calls in progress are not resynced", exc)
            return
        marker = Message({"Event": RESYNC_EVENT})
        marker.channels = [c for c in channels if c.get("Event") == "CoreShowChannel"]
        await ami.events.put(marker)

    def _set_waiting(self) -> None:
        waiting = self.tracker.waiting()
        if waiting != self._waiting:
            metrics = self.services.metrics
            for team, count in waiting.items():
                if self._waiting.get(team) != count:
                    metrics.set_waiting(team, count)
            self._waiting = waiting

    # -- the writer side ---------------------------------------------------------------

    async def run(self) -> None:
        while True:
            effect = await self.effects.get()
            try:
                await self.apply(effect)
            except Exception:
                # The database may be briefly unavailable; one call's figures are lost
                # rather than the listener. The call itself is not affected.
                log.exception(
                    "could not record %s for call %s", type(effect).__name__, effect.uniqueid
                )
            self.written += 1

    async def apply(self, effect: Effect) -> None:
        if isinstance(effect, Started):
            await self._started(effect)
        elif isinstance(effect, Answered):
            await self._answered(effect)
        else:
            await self._ended(effect)

    async def _started(self, effect: Started) -> None:
        """The row for the call, unless the IVR handler (or an earlier run) made it."""
        async with self.services.sessions() as session:
            exists = await session.scalar(select(Call.id).where(Call.uniqueid == effect.uniqueid))
            if exists is not None:
                return
            session.add(
                Call(
                    uniqueid=effect.uniqueid,
                    linkedid=effect.linkedid,
                    entry=effect.entry,
                    caller=effect.caller,
                    started_at=_utc(effect.at),
                )
            )
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()  # the IVR handler was first: same call, same row

    async def _answered(self, effect: Answered) -> None:
        async with self.services.sessions() as session:
            result = await session.execute(
                update(Call)
                .where(Call.uniqueid == effect.uniqueid, Call.answered_by == "")
                .values(
                    answered_by=effect.team, agent=effect.agent, wait_seconds=effect.wait_seconds
                )
            )
            await session.commit()
        if _rowcount(result) == 1:
            self.services.metrics.call_answered(effect.team, effect.wait_seconds)

    async def _ended(self, effect: Ended) -> None:
        metrics = self.services.metrics
        async with self.services.sessions() as session:
            row = await session.scalar(select(Call).where(Call.uniqueid == effect.uniqueid))
            if row is None:
                return  # not a call we record (its Started found no entry)
            if row.outcome:
                return  # decided and counted before (a reconnect, a restart)
            hopper = (
                await session.execute(
                    select(Hopper.team_id)
                    .where(Hopper.call_uniqueid.in_(effect.uniqueids))
                    .order_by(Hopper.id.desc())
                    .limit(1)
                )
            ).first()
            outcome, team = effect.outcome, effect.team
            if hopper is not None:
                outcome, team = "hopper", hopper.team_id
            elif effect.outcome == "abandoned" and not effect.team and row.route in ROUTES:
                outcome = row.route
            result = await session.execute(
                update(Call)
                .where(Call.uniqueid == effect.uniqueid, Call.outcome == "")
                .values(
                    outcome=outcome,
                    team_id=team if team != KCC else KCC,
                    ended_at=_utc(effect.at),
                    agent=effect.agent or row.agent,
                    wait_seconds=(
                        effect.wait_seconds if effect.wait_seconds is not None else row.wait_seconds
                    ),
                )
            )
            await session.commit()
        if _rowcount(result) != 1:
            return
        metrics.call_offered(effect.entry_kind)
        if outcome == "abandoned" and team:
            metrics.call_abandoned(team)
        for to_team, transfer_result in effect.transfers:
            metrics.transfer(to_team, transfer_result)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def listener_of(services: Services) -> CallListener:
    existing = services.extras.get(EXTRA_KEY)
    if isinstance(existing, CallListener):
        return existing
    listener = CallListener(services)
    services.extras[EXTRA_KEY] = listener
    return listener


def subscribe(services: Services, bus: EventBus) -> None:
    """AMI subscriber: feed the tracker; resync from the live channels on every connect."""
    listener = listener_of(services)
    bus.subscribe(listener.on_event)
    if services.ami is not None:
        services.ami.on_connected.append(listener.on_connected)


async def run(services: Services) -> None:
    """Worker: write the tracker's effects and count them."""
    await listener_of(services).run()
