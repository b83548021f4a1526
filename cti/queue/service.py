"""The waiting lines (the KCC's, and any team's with mode = "queue"): agent states in the
database, pushed to Asterisk's app_queue.

Why the database is the truth and app_queue only carries it out: an agent signs in on the
phone or on the screen, the supervisor sees the same state on the board, and after an
Asterisk restart or an AMI reconnect nobody has to sign in again. Every change is written
(and audited) first, then pushed over the one AMI client (QueueAdd, QueueRemove,
QueuePause); ``restore`` pushes the whole table on every (re)connect, so a push lost while
Asterisk was away is repaired by the next connect. With several `bereik serve`, the owner
of the call tracking lease restores (cti/calls/lease.py ``owner_duty``), once per connect.

An agent has one state, whichever lines they answer: signing in (pausing, ...) on the phone
or the screen does it in every line they are a member of (Config.waiting_lines), and
app_queue's shared_lastcall gives one wrap-up after a call from any of them.

States an agent is in (``state_of``): signed_out; paused (with a reason from the TOML, or
``ring_out`` when the agent let a queue call ring out); on_call; wrapup (the configured
seconds after a call, which app_queue enforces with its ``wrapuptime`` so no call slips in
between the end of a call and our reaction to it); available.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, Update, bindparam, func, select, update

from cti.ami.client import AmiActionFailed, AmiError
from cti.ami.nodes import Ami
from cti.audit import audit
from cti.services import Services
from cti.store.models import AgentState, QueueCall, VirtualHold
from dialplan.config import Config, WaitingLine

log = logging.getLogger("bereik.queue")

KCC_QUEUE = "kcc"
RING_OUT = "ring_out"
AGENT_STATES = cast(Table, AgentState.__table__)
# How long a restore waits for a starting Asterisk to load app_queue.
QUEUE_LOAD_SECONDS = 30
STATES = ("signed_out", "available", "on_call", "wrapup", "paused")
ACTIONS = ("sign_in", "sign_out", "pause", "ready")


class QueueError(Exception):
    """A refused change, phrased for the agent (Dutch, as the screen shows it)."""


def queue_enabled(services: Services) -> bool:
    """Whether the KCC is a waiting line (its screen, board row and virtual hold)."""
    return services.config.kcc.mode == "queue"


def lines_of(config: Config, extension: str) -> list[WaitingLine]:
    """The waiting lines this extension answers in."""
    return [line for line in config.waiting_lines() if extension in line.members]


def line_named(config: Config, name: str) -> WaitingLine:
    """The line called `name`; the KCC's when there is no such line (a stale dialplan)."""
    found = config.waiting_line(name) or config.waiting_line(KCC_QUEUE)
    if found is None:
        raise QueueError(f"Geen wachtrij {name!r} ingesteld.")
    return found


def interface(extension: str) -> str:
    return f"PJSIP/{extension}"


def state_interface(services: Services, extension: str) -> str:
    """Whose device state app_queue reads for the member: the phone's own, or with several
    nodes one custom state that every node shares (cti/queue/devicestate.py)."""
    if services.config.nodes:
        return f"Custom:bereik-agent-{extension}"
    return interface(extension)


def state_of(row: AgentState | Row[Any] | None, now: datetime) -> str:
    """The one state shown for an agent, from what they chose and what the queue saw."""
    if row is None or not row.signed_in:
        return "signed_out"
    if row.on_call_since is not None:
        return "on_call"
    if row.wrapup_until is not None and row.wrapup_until > now:
        return "wrapup"
    if row.paused:
        return "paused"
    return "available"


@dataclass(frozen=True)
class AgentView:
    extension: str
    name: str
    state: str
    reason: str
    since: datetime | None
    wrapup_until: datetime | None


def pause_reasons(services: Services) -> dict[str, str]:
    """Reason id -> label, the configured ones plus ring_out (set by the exchange only)."""
    return {**services.config.queue.pause_reasons, RING_OUT: "Niet opgenomen"}


async def agent_views(
    services: Services, now: datetime | None = None, queue: str = KCC_QUEUE
) -> list[AgentView]:
    """Every member of the line `queue` (the KCC's: its agents) with their state, in
    configured order."""
    now = now or datetime.now(UTC)
    async with services.sessions() as session:
        rows = {row.extension: row for row in (await session.execute(select(AgentState))).scalars()}
    return views_of(services.config, rows, now, queue)


def views_of(
    config: Config, rows: Mapping[str, AgentState | Row[Any]], now: datetime, queue: str
) -> list[AgentView]:
    """The line's members' views from the agent_states rows (ORM objects or Core rows)."""
    names = {phone.extension: phone.name for phone in config.phones}
    views = []
    line = config.waiting_line(queue)
    for extension in line.members if line else config.kcc.agents:
        row = rows.get(extension)
        state = state_of(row, now)
        views.append(
            AgentView(
                extension=extension,
                name=names.get(extension, extension),
                state=state,
                reason=row.pause_reason if row is not None and state == "paused" else "",
                since=row.changed_at if row is not None else None,
                wrapup_until=row.wrapup_until if state == "wrapup" and row else None,
            )
        )
    return views


async def unavailable_agents(services: Services, extensions: list[str]) -> set[str]:
    """Of these extensions, the agents on a queue call or in wrap-up right now.

    A team number that rings (mode = "ring") asks this so that an agent who is also in a
    line is never rung as call waiting, nor during the wrap-up the queue grants them.
    """
    if not extensions:
        return set()  # nobody present to ring: nothing to ask the database
    now = datetime.now(UTC)
    async with services.sessions() as session:
        rows = (
            await session.execute(select(AgentState).where(AgentState.extension.in_(extensions)))
        ).scalars()
        return {row.extension for row in rows if state_of(row, now) in ("on_call", "wrapup")}


async def change_state(
    services: Services, extension: str, action: str, actor: str, reason: str = ""
) -> str:
    """An agent's own choice (feature code, screen, API): stored, audited, then pushed.

    Returns the new state. ``ready`` ends a pause and, when not on a call, the wrap-up.
    """
    config = services.config
    if not config.waiting_lines():
        raise QueueError("Er is geen wachtrij ingesteld (kcc.mode, teams.mode).")
    lines = lines_of(config, extension)
    if not lines:
        raise QueueError(f"Toestel {extension} is geen KCC-toestel en in geen wachtrij.")
    if action not in ACTIONS:
        raise QueueError(f"Onbekende actie {action!r}; kies uit {', '.join(ACTIONS)}.")
    if action == "pause":
        reason = reason or next(iter(config.queue.pause_reasons))
        if reason not in pause_reasons(services):
            raise QueueError(
                f"Onbekende pauzereden {reason!r}; kies uit "
                f"{', '.join(config.queue.pause_reasons)}."
            )
    now = datetime.now(UTC)
    end_wrapup = False
    async with services.sessions() as session, session.begin():
        row = await session.get(AgentState, extension)
        if row is None:
            row = AgentState(
                extension=extension,
                queue=lines[0].name,
                signed_in=False,
                paused=False,
                pause_reason="",
                changed_by=actor,
            )
            session.add(row)
        if action == "sign_in":
            row.signed_in, row.paused, row.pause_reason = True, False, ""
        elif action == "sign_out":
            row.signed_in, row.paused, row.pause_reason = False, False, ""
        elif action == "pause":
            row.signed_in, row.paused, row.pause_reason = True, True, reason
        else:  # ready
            row.signed_in, row.paused, row.pause_reason = True, False, ""
            end_wrapup = (
                row.on_call_since is None
                and row.wrapup_until is not None
                and row.wrapup_until > now
            )
            if end_wrapup:
                row.wrapup_until = now
        row.changed_at, row.changed_by = now, actor
        audit(session, actor, f"agent_{action}", "agent", extension, reason)
        state = state_of(row, now)
        snapshot = _Snapshot(extension, row.signed_in, row.paused, row.pause_reason)
    await push(services, snapshot, reset=end_wrapup)
    log.info(
        "agent %s: %s%s by %s -> %s",
        extension,
        action,
        f" ({reason})" if reason else "",
        actor,
        state,
    )
    return state


async def pause_after_ring_out(services: Services, extension: str) -> None:
    """The queue rang this agent and nobody picked up: paused, so callers are not held up
    by a phone nobody is at; the screen shows why and the agent says ready to go on."""
    async with services.sessions() as session, session.begin():
        # Every process sees the AgentRingNoAnswer: the one whose update takes pauses,
        # audits and pushes; the others find the agent paused already.
        result = await session.execute(
            update(AGENT_STATES)
            .where(
                AGENT_STATES.c.extension == extension,
                AGENT_STATES.c.signed_in.is_(True),
                AGENT_STATES.c.paused.is_(False),
            )
            .values(
                paused=True,
                pause_reason=RING_OUT,
                changed_at=datetime.now(UTC),
                changed_by="exchange",
            )
        )
        if int(getattr(result, "rowcount", 0) or 0) != 1:
            return
        audit(session, "exchange", "agent_pause", "agent", extension, RING_OUT)
        snapshot = _Snapshot(extension, True, True, RING_OUT)
    await push(services, snapshot)
    log.info("agent %s paused: let a queue call ring out", extension)


@dataclass(frozen=True)
class _Snapshot:
    extension: str
    signed_in: bool
    paused: bool
    reason: str


async def push(services: Services, agent: _Snapshot, reset: bool = False) -> None:
    """Make app_queue's member match the row, in every line of the agent. Failures are
    logged, not raised: the row is stored, and ``restore`` on the next AMI connect pushes it
    again."""
    for line in lines_of(services.config, agent.extension):
        await _push_to(services, line.name, agent, reset)


async def _push_to(services: Services, queue: str, agent: _Snapshot, reset: bool) -> None:
    ami = services.ami
    if ami is None:
        return
    member = interface(agent.extension)
    try:
        if not agent.signed_in or reset:
            await _tolerant(
                ami, {"Action": "QueueRemove", "Queue": queue, "Interface": member}, "Not there"
            )
        if agent.signed_in:
            # The member's wrap-up lives in app_queue; removing and adding it again (reset)
            # is the only way to end it early. It also makes the agent the longest idle.
            await _tolerant(
                ami,
                {
                    "Action": "QueueAdd",
                    "Queue": queue,
                    "Interface": member,
                    "StateInterface": state_interface(services, agent.extension),
                    "MemberName": agent.extension,
                    "Paused": "true" if agent.paused else "false",
                    "Reason": agent.reason,
                },
                "Already there",
            )
            await ami.action(
                {
                    "Action": "QueuePause",
                    "Queue": queue,
                    "Interface": member,
                    "Paused": "true" if agent.paused else "false",
                    "Reason": agent.reason,
                }
            )
    except AmiError as exc:
        _unpushed.setdefault(id(ami), set()).add(agent.extension)
        log.warning(
            "queue %s member %s not pushed to Asterisk now (%s); pushed again on reconnect",
            queue,
            agent.extension,
            exc,
        )


# Agents whose change this process stored but could not push (its AMI was down), per AMI
# client: pushed again on this process's next connect, owner of the lease or not. The
# owner's restore may have run before the change was stored (a sign-in through the other
# process in the second before its AMI connected was lost that way).
_unpushed: dict[int, set[str]] = {}


async def push_unpushed(services: Services) -> None:
    """On every AMI (re)connect: this process's own pushes that failed, from the rows."""
    ami = services.ami
    if ami is None or not _unpushed.get(id(ami)):
        return
    pending = set(_unpushed[id(ami)])
    await _queue_loaded(ami)
    async with services.sessions() as session:
        rows = {
            row.extension: row
            for row in (
                await session.execute(select(AgentState).where(AgentState.extension.in_(pending)))
            ).scalars()
        }
    # Taken off the list only once their rows are read: a store that is down raises above,
    # and the connect duty's retry (cti/ami/client.py) finds them still to push. A push
    # that fails again puts its agent back (_push_to).
    _unpushed[id(ami)] -= pending
    for extension in sorted(pending):
        await push(services, _snapshot_of(extension, rows.get(extension)))
    log.info("queue members pushed again after the reconnect: %s", ", ".join(sorted(pending)))


def _snapshot_of(extension: str, row: AgentState | None) -> _Snapshot:
    return _Snapshot(
        extension,
        bool(row and row.signed_in),
        bool(row and row.paused),
        row.pause_reason if row else "",
    )


async def _tolerant(ami: Ami, action: dict[str, str], harmless: str) -> None:
    """An action whose failure with this message means it was already so."""
    try:
        await ami.action(action)
    except AmiActionFailed as exc:
        if harmless.lower() not in str(exc).lower():
            raise


async def restore(services: Services) -> None:
    """On every AMI (re)connect: every line's members become what the database says.

    Signed-in agents are added (with their pause), everyone else is removed, so members
    Asterisk kept from before (or that someone added by hand) do not ring.
    """
    lines = services.config.waiting_lines()
    if not lines or services.ami is None:
        return
    await _queue_loaded(services.ami)
    async with services.sessions() as session:
        rows = {row.extension: row for row in (await session.execute(select(AgentState))).scalars()}
    now = datetime.now(UTC)
    restored = 0
    for extension in dict.fromkeys(member for line in lines for member in line.members):
        row = rows.get(extension)
        snapshot = _snapshot_of(extension, row)
        await push(services, snapshot)
        restored += snapshot.signed_in
        if row is not None and row.on_call_since is not None:
            # Calls did not survive the restart (the call tracker resyncs them); an agent
            # left "on a call" by a lost AgentComplete would never be shown free again.
            await _clear_call(services, extension, now)
    log.info(
        "queues %s restored from the database: %d agents signed in",
        ", ".join(line.name for line in lines),
        restored,
    )


async def _queue_loaded(ami: Ami) -> None:
    """Until app_queue answers (bounded): a starting Asterisk accepts AMI logins before it
    loaded its modules, and a QueueAdd then fails as an unknown command, with no later
    connect to repeat it."""
    deadline = time.monotonic() + QUEUE_LOAD_SECONDS
    while True:
        try:
            await ami.action({"Action": "QueueSummary", "Queue": KCC_QUEUE})
            return
        except AmiActionFailed as exc:
            if "unknown command" not in str(exc).lower():
                return  # app_queue is there; it answered
        except AmiError:
            return  # not connected: the next connect restores
        if time.monotonic() > deadline:
            log.warning("app_queue not loaded after %d s; restoring anyway", QUEUE_LOAD_SECONDS)
            return
        await asyncio.sleep(0.5)


async def _clear_call(services: Services, extension: str, now: datetime) -> None:
    async with services.sessions() as session, session.begin():
        row = await session.get(AgentState, extension)
        if row is not None:
            row.on_call_since = None
            row.changed_at = now


# The statements every answered call of a line runs, built once with their values as
# parameters: building one (its objects and SQLAlchemy's cache key) per call cost about as
# much CPU as executing it (cti/queue/events.py, place_in_line below).
CALL_STARTED = (
    update(AGENT_STATES)
    .where(AGENT_STATES.c.extension == bindparam("agent"))
    .values(on_call_since=bindparam("at_"), wrapup_until=None, changed_at=bindparam("at_"))
)
CALL_ENDED = (
    update(AGENT_STATES)
    .where(AGENT_STATES.c.extension == bindparam("agent"))
    .values(on_call_since=None, wrapup_until=bindparam("until"), changed_at=bindparam("at_"))
)


def call_marked(
    config: Config, extension: str, at: datetime, *, started: bool
) -> tuple[Update, dict[str, object]]:
    """The agent's row after a queue call of theirs began (AgentConnect) or ended
    (AgentComplete), as a statement and its parameters: one UPDATE, no read first (an agent
    with no row yet has no state to change). A statement: the event's other write goes in
    the same transaction (cti/queue/events.py): it comes twice on every answered call."""
    if started:
        return CALL_STARTED, {"agent": extension, "at_": at}
    seconds = config.queue.wrapup_seconds
    until = at + timedelta(seconds=seconds) if seconds else None
    return CALL_ENDED, {"agent": extension, "at_": at, "until": until}


PLACE_IN_LINE = select(
    select(func.count())
    .where(
        QueueCall.queue == bindparam("queue"),
        QueueCall.outcome == "",
        QueueCall.joined_at < bindparam("arrival"),
    )
    .scalar_subquery(),
    select(func.count())
    .where(
        VirtualHold.queue == bindparam("queue"),
        VirtualHold.status.in_(("pending", "placing", "queued")),
        VirtualHold.arrived_at < bindparam("arrival"),
    )
    .scalar_subquery(),
)


async def place_in_line(services: Services, arrival: datetime, queue: str = KCC_QUEUE) -> int:
    """The place of a caller who came at `arrival`: one more than those who came earlier
    and are still waiting (in line or hearing the entry messages), callbacks that keep a
    place included. From the database, so every process counts the same line."""
    # One statement, one round trip: the entry handler asks it on every caller.
    async with services.sessions() as session:
        found = (await session.execute(PLACE_IN_LINE, {"queue": queue, "arrival": arrival})).one()
    return 1 + int(found[0] or 0) + int(found[1] or 0)


async def waiting_now(
    services: Services, now: datetime, queue: str = KCC_QUEUE
) -> tuple[int, float]:
    """(callers waiting, seconds the longest has waited) in this line now."""
    async with services.sessions() as session:
        count, oldest = (
            await session.execute(
                select(func.count(), func.min(QueueCall.joined_at)).where(
                    QueueCall.queue == queue, QueueCall.outcome == ""
                )
            )
        ).one()
    longest = (now - oldest).total_seconds() if oldest is not None else 0.0
    return int(count), max(longest, 0.0)
