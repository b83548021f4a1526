"""app_queue's events in, the waiting line's rows, agent states and figures out.

The bus callback (``on_event``) only keeps who is in line now (for the gauges and the
position a new caller hears) and queues the events that change the database; the worker
(``run``) writes them in order. Each stay in line is one ``queue_calls`` row, decided once
(``UPDATE ... WHERE outcome = ''``), and counted only when that update took, so a replayed
event after a reconnect is not counted twice.

Events used (manager.conf: read class ``agent``): QueueCallerJoin (a caller entered),
QueueCallerLeave (left the line), the caller's Hangup (a stay still undecided is then
abandoned), AgentConnect (an agent answered; the wait runs from arrival), AgentComplete
(the call ended: talk time, and wrap-up starts), AgentRingNoAnswer (an agent let it ring
out: paused), and our dialplan's UserEvent ``BereikQueueExit`` (Queue() returned with a
QUEUESTATUS, or the entry handler turned the caller away: an overflow to the callback
offer).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from panoramisk.message import Message
from sqlalchemy import Connection, Table, bindparam, func, select, update

from cti.ami.bus import reads
from cti.ami.channels import extension_of_member, is_vhold_placeholder
from cti.ami.client import AmiError
from cti.queue import service
from cti.services import Services
from cti.store.db import Sessions, insert_or_skip
from cti.store.faults import store_or_set_aside
from cti.store.models import QueueCall
from dialplan.config import Config, WaitingLine

log = logging.getLogger("bereik.queue")

QUEUE_CALLS = cast(Table, QueueCall.__table__)
# The statements of every call in line, built once with their values as parameters:
# building one per event (its objects and SQLAlchemy's cache key) cost about as much CPU
# as executing it.
JOINED_AT = select(QUEUE_CALLS.c.joined_at).where(QUEUE_CALLS.c.uniqueid == bindparam("stay"))
# Decided once: only a stay still undecided takes an outcome.
DECIDED = (
    update(QUEUE_CALLS)
    .where(QUEUE_CALLS.c.uniqueid == bindparam("stay"), QUEUE_CALLS.c.outcome == "")
    .values(
        outcome=bindparam("outcome_"),
        left_at=bindparam("left"),
        wait_seconds=bindparam("wait"),
        agent=bindparam("agent_"),
        detail=bindparam("detail_"),
    )
)
TALKED = (
    update(QUEUE_CALLS)
    .where(QUEUE_CALLS.c.uniqueid == bindparam("stay"))
    .values(talk_seconds=bindparam("talk"))
)
# The stay's row unless it exists, per dialect (the skip is spelled per database).
STAY_MADE: dict[str, Any] = {}
# What the set_aside table calls this writer's work (cti/store/faults.py).
SOURCE = "queue events"
WRITTEN_EVENTS = (
    "QueueCallerJoin",
    "AgentConnect",
    "AgentComplete",
    "AgentRingNoAnswer",
)
HANGUP_IN_LINE = "BereikQueueHangup"
# QUEUESTATUS after Queue() -> the overflow reason we count.
OVERFLOW_BY_STATUS = {
    "TIMEOUT": "max_wait",
    "FULL": "full",
    "JOINEMPTY": "nobody_signed_in",
    "LEAVEEMPTY": "nobody_signed_in",
    "JOINUNAVAIL": "nobody_signed_in",
    "LEAVEUNAVAIL": "nobody_signed_in",
    "CLOSING": "closing",
}


@dataclass
class Line:
    """Who is in one queue now, as the events tell: for the gauges only (the entry handler
    and the screens read the database, so every process sees the same line)."""

    joined: dict[str, float] = field(default_factory=dict)  # uniqueid -> joined at
    # Every caller seen coming to the line, until their channel hangs up: a hangup with the
    # stay still undecided is an abandon (app_queue's own QueueCallerAbandon also comes for
    # an overflow, when the caller goes on to the callback offer).
    seen: set[str] = field(default_factory=set)
    # uniqueid -> the arrival the dialplan stamped (the moment its QUEUE_PRIO is made of),
    # so a caller whose entry handler was not reached still gets that moment as joined_at.
    arrival: dict[str, float] = field(default_factory=dict)

    def longest(self, now: float) -> float:
        return max((now - t for t in self.joined.values()), default=0.0)


class QueueEvents:
    """Made once by `bereik serve`: ``on_event`` on the bus, ``on_connected`` on the AMI
    client, ``restore`` as the tracking owner's duty, ``run`` as a worker."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.names = [line.name for line in services.config.waiting_lines()]
        self.lines: dict[str, Line] = {name: Line() for name in self.names}
        for name in self.names:
            services.metrics.queue.init_queue(name)
        self.events: asyncio.Queue[Message] = asyncio.Queue()

    def line(self, queue: str) -> Line:
        return self.lines.setdefault(queue, Line())

    # -- the bus side -----------------------------------------------------------------

    @reads(*WRITTEN_EVENTS, "QueueCallerLeave", "UserEvent", "Hangup")
    def on_event(self, event: Message) -> None:
        name = event.get("Event", "")
        queue = str(event.get("Queue", ""))
        uniqueid = _first(event.get("Uniqueid", ""))
        if name == "QueueCallerJoin":
            line = self.line(queue)
            line.joined[uniqueid] = _timestamp(event)
            line.seen.add(uniqueid)
        elif name == "QueueCallerLeave":
            self.line(queue).joined.pop(uniqueid, None)
        elif name == "AgentConnect":
            # Answered: its hangup is no abandon, so no stay to decide is queued for it.
            self.line(queue).seen.discard(uniqueid)
        elif (
            name == "UserEvent"
            and event.get("UserEvent") == "BereikRoute"
            and event.get("Team") in self.names
        ):
            # Came to a line: from here a hangup before an answer is an abandon.
            line = self.line(str(event.get("Team")))
            line.seen.add(uniqueid)
            with contextlib.suppress(TypeError, ValueError):
                line.arrival[uniqueid] = float(_first(event.get("Arrival", "")))
            return
        elif name == "UserEvent" and event.get("UserEvent") == "BereikQueueExit":
            pass  # written below: an overflow
        elif name == "Hangup":
            for queue_name, line in self.lines.items():
                line.arrival.pop(uniqueid, None)
                if uniqueid in line.seen:
                    # Hung up in line, or while hearing the entry messages before joining
                    # it: abandoned, unless the stay was decided before (answered,
                    # overflow), which the writer's guarded update respects.
                    line.seen.discard(uniqueid)
                    self.events.put_nowait(
                        Message(
                            {
                                "Event": HANGUP_IN_LINE,
                                "Queue": queue_name,
                                "Uniqueid": uniqueid,
                                "Timestamp": str(_timestamp(event)),
                            }
                        )
                    )
            return
        else:
            if name not in WRITTEN_EVENTS:
                return
        if name in WRITTEN_EVENTS or name == "UserEvent":
            self.events.put_nowait(event)
        self._set_waiting(queue)

    def _set_waiting(self, queue: str) -> None:
        if queue not in self.lines:
            return
        metrics = self.services.metrics.queue
        line = self.lines[queue]
        metrics.waiting.labels(queue).set(len(line.joined))
        metrics.longest.labels(queue).set(round(line.longest(time.time()), 1))

    async def on_connected(self) -> None:
        """Every process: its own member pushes that failed while AMI was down, again; who
        waits now in each line, from Asterisk's QueueStatus, for its own gauges."""
        if self.names:
            await service.push_unpushed(self.services)
        waiting = await self._waiting_in_asterisk()
        for name, live in (waiting or {}).items():
            self.line(name).joined = live
            self._set_waiting(name)

    async def restore(self) -> None:
        """The owner's duty on a (re)connect (cti/calls/lease.py ``owner_duty``): members back
        from the database, and stays that Asterisk no longer has ended as lost."""
        if not self.names:
            return
        await service.restore(self.services)
        waiting = await self._waiting_in_asterisk()
        if waiting is not None:
            await self._close_lost({uniqueid for live in waiting.values() for uniqueid in live})

    async def _waiting_in_asterisk(self) -> dict[str, dict[str, float]] | None:
        """Line -> (uniqueid -> joined at) of the callers waiting in each; None if Asterisk
        could not be asked about every line (then nothing is taken for lost)."""
        ami = self.services.ami
        if not self.names or ami is None:
            return None
        waiting: dict[str, dict[str, float]] = {}
        for name in self.names:
            try:
                entries = await ami.action_list(
                    {"Action": "QueueStatus", "Queue": name}, timeout=10
                )
            except AmiError as exc:
                log.warning("QueueStatus %s failed (%s); waiting callers not resynced", name, exc)
                return None
            now = time.time()
            live = [e for e in entries if e.get("Event") == "QueueEntry"]
            waiting[name] = {
                str(e.get("Uniqueid", "")): now - float(e.get("Wait", 0) or 0) for e in live
            }
        return waiting

    async def _close_lost(self, live: set[str]) -> None:
        """Stays still open in the database but no longer in line (Asterisk restarted while
        they waited): ended as lost, so they do not wait forever on the board."""
        async with self.services.sessions() as session, session.begin():
            await session.execute(
                update(QUEUE_CALLS)
                .where(QUEUE_CALLS.c.outcome == "", QUEUE_CALLS.c.uniqueid.not_in(live))
                .values(outcome="lost", left_at=datetime.now(UTC))
            )

    # -- the writer side ---------------------------------------------------------------

    async def run(self) -> None:
        """Write each event in order by the store's policy (cti/store/faults.py): waited
        out while the store is down, set aside when it refuses the event."""
        while True:
            event = await self.events.get()
            await store_or_set_aside(
                self.services.sessions,
                SOURCE,
                dict(event),
                functools.partial(self.apply, event),
                metrics=self.services.metrics,
                logger=log,
            )

    async def apply(self, event: Mapping[str, Any]) -> None:
        """Write one event: each in one transaction (the stay's row and the agent's
        state together), counted on the gauges only once it is committed, so a retry
        after a store fault neither loses nor doubles a count."""
        name = str(event.get("Event", ""))
        queue = str(event.get("Queue", ""))
        uniqueid = str(event.get("Uniqueid", ""))
        at = datetime.fromtimestamp(_timestamp(event), UTC)
        # app_queue names the member by its interface (PJSIP/2001), not a channel.
        agent = extension_of_member(str(event.get("Interface", "")))
        metrics = self.services.metrics.queue
        config = self.services.config
        if name == "QueueCallerJoin":
            if is_placeholder(str(event.get("Channel", ""))):
                return  # a virtual hold's stand-in: its caller's stay was decided already
            if uniqueid in joined_known(self.services):
                # This process's entry handler made the row a moment ago; the first one
                # made stays, so the insert below would be skipped anyway.
                return
            caller = str(event.get("CallerIDNum", ""))
            stamped = self.line(queue).arrival.get(uniqueid)
            if stamped is not None and abs(stamped - at.timestamp()) < 3600:
                at = datetime.fromtimestamp(stamped, UTC)
            await record_arrival(self.services, queue, uniqueid, caller, at)
        elif name == "AgentConnect":
            marked = service.call_marked(config, agent, at, started=True) if agent else None
            wait = await self._decide(uniqueid, "answered", at, agent=agent, also=marked)
            if wait is not None:
                self._count_answered(queue, wait)
        elif name == "AgentComplete":
            talked = (TALKED, {"stay": uniqueid, "talk": float(event.get("TalkTime", 0) or 0)})
            marked = service.call_marked(config, agent, at, started=False) if agent else None
            await self.services.writer.transaction(
                functools.partial(_execute, statements=[talked, *([marked] if marked else [])])
            )
        elif name == HANGUP_IN_LINE:
            wait = await self._decide(uniqueid, "abandoned", at)
            if wait is not None:
                short = wait < config.queue.short_abandon_seconds
                metrics.offered.labels(queue).inc()
                metrics.abandoned.labels(queue, "true" if short else "false").inc()
        elif name == "AgentRingNoAnswer":
            if agent:
                await service.pause_after_ring_out(self.services, agent)
        elif name == "UserEvent" and event.get("UserEvent") == "BereikQueueExit":
            status = str(event.get("Status", ""))
            reason = OVERFLOW_BY_STATUS.get(status.upper(), "other")
            # Turned away before joining (closed, full, nobody signed in): a stay of no
            # time, made and decided in one transaction.
            stay = functools.partial(
                _insert_stay,
                queue=queue,
                uniqueid=uniqueid,
                caller=str(event.get("CallerIDNum", "")),
                at=at,
            )
            wait = await self._decide(uniqueid, "overflow", at, detail=status, first=stay)
            if wait is not None:
                metrics.offered.labels(queue).inc()
                metrics.overflow.labels(queue, reason).inc()

    async def _decide(
        self,
        uniqueid: str,
        outcome: str,
        at: datetime,
        agent: str = "",
        detail: str = "",
        also: tuple[Any, dict[str, object]] | None = None,
        first: Callable[[Connection], object] | None = None,
    ) -> float | None:
        """Set the stay's outcome once, in one transaction through the call path's writer
        (with `first` before it and the statement `also` after it); its wait (from
        arrival) when this decided it.

        The arrival comes from memory when this process made the row (no read on an
        answered call), from the row otherwise (another process made it, or this one
        restarted since). The guarded UPDATE decides either way: memory only saves the
        SELECT."""
        joined = joined_known(self.services).pop(uniqueid, None)
        values = {"stay": uniqueid, "outcome_": outcome, "left": at, "agent_": agent}
        return await self.services.writer.transaction(
            functools.partial(
                _decided,
                joined=joined,
                values=values | {"detail_": detail[:32]},
                also=also,
                first=first,
            )
        )

    def _count_answered(self, queue: str, wait: float) -> None:
        metrics = self.services.metrics.queue
        metrics.offered.labels(queue).inc()
        metrics.answered.labels(queue).inc()
        metrics.wait.labels(queue).observe(wait)
        if wait <= self.services.config.queue.service_level_seconds:
            metrics.answered_in_level.labels(queue).inc()


def _decided(
    conn: Connection,
    *,
    joined: datetime | None,
    values: dict[str, Any],
    also: tuple[Any, dict[str, object]] | None,
    first: Callable[[Connection], object] | None,
) -> float | None:
    """The writer's job for `QueueEvents._decide`."""
    if first is not None:
        first(conn)
    if joined is None:
        joined = conn.scalar(JOINED_AT, {"stay": values["stay"]})
    wait: float | None = None
    if joined is not None:
        wait = round(max((values["left"] - joined).total_seconds(), 0.0), 3)
        result = conn.execute(DECIDED, values | {"wait": wait})
        if int(getattr(result, "rowcount", 0) or 0) != 1:
            wait = None
    if also is not None:
        conn.execute(*also)
    return wait


def _execute(conn: Connection, *, statements: list[tuple[Any, dict[str, object]]]) -> None:
    for statement, parameters in statements:
        conn.execute(statement, parameters)


is_placeholder = is_vhold_placeholder


async def replay(services: Services, payload: Mapping[str, Any]) -> None:
    """`bereik events retry`: write one set-aside queue event."""
    await QueueEvents(services).apply(payload)


def _first(value: Any) -> str:
    """A header given twice (our UserEvent's Uniqueid beside the channel's) comes as a list."""
    return str(value[0] if isinstance(value, list) and value else value)


def _timestamp(event: Mapping[str, Any]) -> float:
    try:
        return float(event.get("Timestamp") or time.time())
    except (TypeError, ValueError):
        return time.time()


# Stays whose row this process made, uniqueid -> joined_at exactly as written, per store
# (a test makes several in one process): QueueCallerJoin after this process's entry
# handler then writes nothing, and the stay's decision needs no read. A cache written
# through, never the truth: what is not here (made by another process, or before a
# restart) is read from the row. Taken out when the stay is decided; bounded, so stays
# decided elsewhere (another process, a callback) do not make it grow with calls handled.
_joined: weakref.WeakKeyDictionary[Sessions, dict[str, datetime]] = weakref.WeakKeyDictionary()
JOINED_KEPT = 10_000


def joined_known(services: Services) -> dict[str, datetime]:
    known = _joined.get(services.sessions)
    if known is None:
        known = _joined[services.sessions] = {}
    return known


async def record_arrival(
    services: Services, queue: str, uniqueid: str, caller: str, at: datetime, position: int = 0
) -> None:
    """The stay's row, from the moment the caller came to the line (the entry handler), or
    from joining it (when that handler was not reached); the first one made stays."""
    made = await services.writer.transaction(
        functools.partial(
            _insert_stay, queue=queue, uniqueid=uniqueid, caller=caller, at=at, position=position
        )
    )
    if made:
        _remember(services, uniqueid, at)


def _remember(services: Services, uniqueid: str, at: datetime) -> None:
    """A stay this process made, once committed: a rolled-back row must not be taken for
    made."""
    known = joined_known(services)
    known[uniqueid] = at
    if len(known) > JOINED_KEPT:
        del known[next(iter(known))]  # the oldest: its stay was decided elsewhere


# Why a caller is not let into the line, as the entry handler's QUEUESTATUS-like status.
NOBODY_PRESENT = "JOINEMPTY"
LINE_FULL = "FULL"
AGENT_ROWS = select(service.AGENT_STATES)
WAITING_COUNT = select(func.count()).where(
    QUEUE_CALLS.c.queue == bindparam("queue"), QUEUE_CALLS.c.outcome == ""
)


@dataclass(frozen=True)
class Arrival:
    """What the entry handler learns when a caller comes to a line: the members' states,
    why the caller may not enter ("" when they may), and their place in line (0 when not
    entered)."""

    views: list[service.AgentView]
    refused: str
    position: int


async def arrive(
    services: Services, line: WaitingLine, uniqueid: str, caller: str, at: datetime
) -> Arrival:
    """A caller at the line's entry, in one job of the call path's writer: the agents'
    states read, the rules that need the database (nobody signed in, line full) applied,
    the place in line counted and the stay's row made with it. One hop to the database for
    what were three (two reads through the ORM and the writer's insert): the entry
    handler runs this on every caller. The same statements and order as before, in one
    transaction, so every process still counts the same line from the database."""
    arrival, made = await services.writer.transaction(
        functools.partial(
            _arrive,
            config=services.config,
            line=line,
            uniqueid=uniqueid,
            caller=caller,
            at=at,
            now=datetime.now(UTC),
        )
    )
    if made:
        _remember(services, uniqueid, at)
    return arrival


def _arrive(
    conn: Connection,
    *,
    config: Config,
    line: WaitingLine,
    uniqueid: str,
    caller: str,
    at: datetime,
    now: datetime,
) -> tuple[Arrival, bool]:
    """The writer's job for `arrive`: (what the handler learns, whether the row was made)."""
    views = _views(conn, config, line.name, now)
    if not any(view.state != "signed_out" for view in views):
        return Arrival(views, NOBODY_PRESENT, 0), False
    if line.max_waiting and int(conn.scalar(WAITING_COUNT, {"queue": line.name}) or 0) >= (
        line.max_waiting
    ):
        return Arrival(views, LINE_FULL, 0), False
    position = _place(conn, line.name, at)
    made = _insert_stay(
        conn, queue=line.name, uniqueid=uniqueid, caller=caller, at=at, position=position
    )
    return Arrival(views, "", position), made


async def line_now(
    services: Services, line: WaitingLine, arrived: datetime
) -> tuple[int, list[service.AgentView]]:
    """(place in line, the members' states) again, in one hop: after the entry messages the
    line and the agents have moved on."""
    return await services.writer.transaction(
        functools.partial(_line_now, config=services.config, queue=line.name, arrived=arrived)
    )


def _line_now(
    conn: Connection, *, config: Config, queue: str, arrived: datetime
) -> tuple[int, list[service.AgentView]]:
    return _place(conn, queue, arrived), _views(conn, config, queue, datetime.now(UTC))


def _views(conn: Connection, config: Config, queue: str, now: datetime) -> list[service.AgentView]:
    rows = {row.extension: row for row in conn.execute(AGENT_ROWS)}
    return service.views_of(config, rows, now, queue)


def _place(conn: Connection, queue: str, arrival: datetime) -> int:
    """service.place_in_line's count, inside a writer's job."""
    found = conn.execute(service.PLACE_IN_LINE, {"queue": queue, "arrival": arrival}).one()
    return 1 + int(found[0] or 0) + int(found[1] or 0)


def _insert_stay(
    conn: Connection,
    *,
    queue: str,
    uniqueid: str,
    caller: str,
    at: datetime,
    position: int = 0,
) -> bool:
    """Whether this made the stay's row (False: it was there)."""
    # One statement: both the entry handler and QueueCallerJoin come here for a stay.
    dialect = conn.dialect.name
    if dialect not in STAY_MADE:
        STAY_MADE[dialect] = insert_or_skip(conn, QUEUE_CALLS, "uniqueid").values(
            queue=bindparam("queue_"),
            uniqueid=bindparam("stay"),
            caller=bindparam("caller_"),
            joined_at=bindparam("at_"),
            position=bindparam("position_"),
            outcome="",
            detail="",
            agent="",
        )
    result = conn.execute(
        STAY_MADE[dialect],
        {
            "queue_": queue,
            "stay": uniqueid,
            "caller_": caller[:80],
            "at_": at,
            "position_": position,
        },
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1
