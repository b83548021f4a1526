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

With several processes, every one follows AMI and runs its tracker (its screens and the
waiting gauge need it), but only the owner of the tracking lease (cti/calls/lease.py)
writes. A standby keeps its effects from the owner's last stored time on; when it takes
over it resyncs from ``CoreShowChannels`` and writes what it kept, so the calls of the
takeover window are recorded, and those the old owner already wrote are not counted again.

Counters move when the call ends (offered, abandoned, transfers) or is first answered
(answered and the wait histogram); ``bereik_calls_waiting`` moves with every event.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

from panoramisk.message import Message
from sqlalchemy import Connection, Table, bindparam, insert, select, update

from cti.ami.bus import reads
from cti.ami.client import AmiError
from cti.ami.nodes import AmiNodes
from cti.calls.lease import LeaseLost, TrackingLease
from cti.calls.tracker import (
    TRACKED_EVENTS,
    AgentLeg,
    Answered,
    CallTracker,
    Effect,
    Ended,
    Routed,
    Started,
)
from cti.services import Services
from cti.store.db import insert_or_skip
from cti.store.faults import set_aside, store_or_set_aside, until_stored
from cti.store.models import AnnouncementHearing, Call, HopperEvent
from dialplan.numbers import main_number_forms
from metrics.registry import BereikMetrics

log = logging.getLogger("bereik.calls")

RESYNC_EVENT = "BereikResync"
# IVR routes that are an outcome of their own when the caller reached nobody.
ROUTES = ("closed", "info")
# Effects written in one transaction at most.
BATCH = 500
BATCH_SECONDS = 0.1
# A standby keeps its effects from this long before the owner's last stored event: events
# reach two processes' trackers in the same order, but a timestamp may come from the clock.
KEEP_MARGIN_SECONDS = 10.0
# Effects kept at most (a standby whose owner stores nothing for a long time).
KEEP_MAX = 200_000
# What the set_aside table calls this listener's work (cti/store/faults.py).
SOURCE = "call events"
# Core statements on the table: the ORM's bulk-update bookkeeping would triple the cost.
CALLS = cast(Table, Call.__table__)
HEARINGS = cast(Table, AnnouncementHearing.__table__)
HOPPER_EVENTS = cast(Table, HopperEvent.__table__)
# The writer's statements, built once with bind parameters: building an expression per
# effect (its where-clause, its values, a subquery) cost the writer more of the event
# loop than executing it, time the AMI reader then lacked (bench/ami_ingest.py's
# profile). SQLAlchemy compiles each once and takes it from its cache after that.
ROUTE = (
    update(CALLS).where(CALLS.c.uniqueid == bindparam("b_call")).values(route=bindparam("b_route"))
)
# The guards that count once: answered_by and outcome are set once, by the update that
# finds them empty (its rowcount says whether this writer decided the call).
ANSWER = (
    update(CALLS)
    .where(CALLS.c.uniqueid == bindparam("b_call"), CALLS.c.answered_by == "")
    .values(
        answered_by=bindparam("b_team"),
        agent=bindparam("b_agent"),
        wait_seconds=bindparam("b_wait", type_=CALLS.c.wait_seconds.type),
    )
)
END = (
    update(CALLS)
    .where(CALLS.c.uniqueid == bindparam("b_call"), CALLS.c.outcome == "")
    .values(
        outcome=bindparam("b_outcome"),
        team_id=bindparam("b_team"),
        ended_at=bindparam("b_ended_at", type_=CALLS.c.ended_at.type),
        agent=bindparam("b_agent"),
        wait_seconds=bindparam("b_wait", type_=CALLS.c.wait_seconds.type),
        # The journey as the tracker saw it, in the same statement (cti/journey).
        steps=bindparam("b_steps", type_=CALLS.c.steps.type),
    )
)
# The rows a batch's answers or ends decide, and the hoppers made of the calls it ends (or
# repeated by them), each read once per batch instead of once per call.
DECIDED = select(
    CALLS.c.uniqueid, CALLS.c.answered_by, CALLS.c.outcome, CALLS.c.agent, CALLS.c.wait_seconds
).where(CALLS.c.uniqueid.in_(bindparam("b_calls", expanding=True)))
HOPPERS_OF = select(
    HOPPER_EVENTS.c.id,
    HOPPER_EVENTS.c.call_uniqueid,
    HOPPER_EVENTS.c.kind,
    HOPPER_EVENTS.c.team_id,
).where(
    HOPPER_EVENTS.c.call_uniqueid.in_(bindparam("b_channels", expanding=True)),
    HOPPER_EVENTS.c.kind.in_(("created", "repeat")),
)
# Values in one IN list at most (SQLite before 3.32 took 999 variables per statement).
IN_CHUNK = 500


def resync_marker(channels: list[Any], node: str, restarted: bool) -> Message:
    """The event that makes the tracker resync from `channels` (CoreShowChannel events),
    queued behind the events already received, so it is handled in order."""
    marker = Message({"Event": RESYNC_EVENT})
    marker.channels = channels
    marker.node = node
    marker.restarted = restarted
    return marker


class CallListener:
    def __init__(self, services: Services, lease: TrackingLease | None = None) -> None:
        config = services.config
        self.services = services
        self.lease = lease or TrackingLease.sole()
        self.lease.on_acquired.append(self.on_connected)
        self.tracker = CallTracker(
            main_number=config.exchange.main_number,
            kcc_number=config.kcc.number,
            team_numbers={team.number: team.id for team in config.teams},
            main_aliases=main_number_forms(
                config.trunk.dids, config.exchange.main_number, config.trunk.country_code
            ),
        )
        # Effects not yet stored, each with the Asterisk time of its event, oldest first.
        self.pending: collections.deque[tuple[float, Started | Answered | Routed | Ended]] = (
            collections.deque(maxlen=KEEP_MAX)
        )
        self._arrived = asyncio.Event()
        # The screens: each phone's part in a call, as the tracker sees it (cti/calls/live.py).
        self.leg_watchers: list[Callable[[AgentLeg], None]] = []
        self.written = 0
        self._waiting: dict[str, int] = {}
        self._waiting_version = -1  # the tracker's at the last look (-1: none yet)
        # Calls with an effect set aside (cti/store/faults.py): their later effects follow.
        self.set_aside_calls: set[str] = set()
        # When each Asterisk (by node; "" for a single one) last started, as CoreStatus said.
        self._asterisk_started: dict[str, str] = {}

    # -- the bus side ------------------------------------------------------------------

    @reads(*TRACKED_EVENTS, RESYNC_EVENT)
    def on_event(self, event: Message) -> None:
        if event.get("Event") == RESYNC_EVENT:
            effects = self.tracker.resync(
                getattr(event, "channels", []),
                node=getattr(event, "node", ""),
                restarted=getattr(event, "restarted", False),
            )
            log.info("call tracker resynchronised: %d calls in progress", len(self.tracker.calls))
        else:
            effects = self.tracker.feed(event)
        at = _event_time(event)
        for effect in effects:
            if isinstance(effect, AgentLeg):
                for watcher in self.leg_watchers:
                    watcher(effect)
            else:
                self.pending.append((at, effect))
                self._arrived.set()
        if not self.lease.owned.is_set():
            self._forget_stored()
        self._set_waiting()

    def _forget_stored(self) -> None:
        """A standby drops what the owner has surely stored."""
        keep_from = self.lease.written_through - KEEP_MARGIN_SECONDS
        while self.pending and self.pending[0][0] < keep_from:
            self.pending.popleft()

    async def on_connected(self) -> None:
        """Ask Asterisk which channels exist; the answer is queued behind older events."""
        ami = self.services.ami
        if ami is None:
            return
        try:
            status = await ami.action({"Action": "CoreStatus"}, timeout=10)
            channels = await ami.action_list({"Action": "CoreShowChannels"}, timeout=10)
        except AmiError as exc:
            log.warning("CoreShowChannels failed (%s); calls in progress are not resynced", exc)
            return
        # Asterisk's start time tells a restart (calls cut) from a reconnect (calls went on).
        started = f"{status.get('CoreStartupDate', '')} {status.get('CoreStartupTime', '')}"
        before = self._asterisk_started.get(ami.node)
        self._asterisk_started[ami.node] = started
        # Unscoped on several nodes (the lease taken over): the answer is any node's, so no
        # restart can be told; each node's own connect tells it.
        scoped = ami.node or not isinstance(ami, AmiNodes)
        restarted = bool(scoped) and before is not None and before != started
        live = [c for c in channels if c.get("Event") == "CoreShowChannel"]
        marker = resync_marker(live, ami.node, restarted)
        await ami.events.put(marker)

    async def node_lost(self, node: str) -> None:
        """Node `node` is gone (its AMI down and Kamailio's probes failing): its calls end
        now as interrupted, instead of staying open in the figures until it comes back,
        which a node that stays down never does. When it comes back, its resync finds
        nothing of these calls left to end."""
        marker = resync_marker([], node, restarted=True)
        ami = self.services.ami
        if ami is not None:
            await ami.events.put(marker)

    def _set_waiting(self) -> None:
        if self.tracker.waiting_version == self._waiting_version:
            return  # no count moved (most events)
        self._waiting_version = self.tracker.waiting_version
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
            while not self.pending:
                self._arrived.clear()
                await self._arrived.wait()
            await self.lease.owned.wait()
            # What else comes within a moment goes in the same transaction: one commit for a
            # burst of events instead of one per effect keeps up with hundreds of calls a
            # second; a tenth of a second later on a wall screen is invisible.
            await asyncio.sleep(BATCH_SECONDS)
            await self._write_batch()

    async def flush(self) -> None:
        """On stopping, after `run` was cancelled: the owner writes what it has not yet, so
        a call that ended a moment before the stop keeps its outcome (a single process has
        no standby to write it). Bounded by the caller: the store may be down."""
        while self.pending and self.lease.owned.is_set():
            if not await self._write_batch():
                return

    async def _write_batch(self) -> bool:
        """Store the oldest pending effects; False when the lease was lost meanwhile."""
        batch = [self.pending.popleft() for _ in range(min(BATCH, len(self.pending)))]
        try:
            stored = await self._apply_until_stored(batch)
        except BaseException:
            # Stopped mid-write, or a fault even setting work aside could not survive (the
            # supervisor restarts this worker): the batch stays pending for `flush` or the
            # next run (writing it twice is harmless, see _apply_until_stored).
            self.pending.extendleft(reversed(batch))
            raise
        if stored:
            self.written += len(batch)
            return True
        # Another process owns the tracking now: keep these for a takeover back.
        self.pending.extendleft(reversed(batch))
        self.lease.lost()
        return False

    async def _apply_until_stored(self, batch: Sequence[tuple[float, Effect]]) -> bool:
        """Store the batch by the store's policy (cti/store/faults.py): True once it is
        stored, False when the lease was lost. Applying it twice is harmless (each row
        records what was counted); losing it would leave calls without a row.

        While the store is down the batch waits and is tried again. When the store refuses
        it for another reason, the batch's effects are written one by one: a refused one is
        set aside with its error, and so is every later effect of the same call (written
        alone they would find no row, and a replay writes them in order after it); every
        other call's effects are written as usual.
        """
        if self.set_aside_calls:
            # A call set aside before: its later effects follow it there, in order.
            follow = [item for item in batch if _call_of(item[1]) in self.set_aside_calls]
            for at, effect in follow:
                await self._apply_one(at, effect)
            batch = [item for item in batch if _call_of(item[1]) not in self.set_aside_calls]
            if not batch:
                return True
        try:
            await until_stored(
                lambda: self.apply(*(effect for _, effect in batch), through=batch[-1][0]),
                what=f"{len(batch)} call events",
                logger=log,
            )
            return True
        except LeaseLost:
            return False
        except Exception as exc:  # the store's policy: refused, not down
            log.warning("%d call events refused (%s); writing them one by one", len(batch), exc)
        try:
            for at, effect in batch:
                await self._apply_one(at, effect)
        except LeaseLost:
            return False
        return True

    async def _apply_one(self, at: float, effect: Effect) -> None:
        """One effect by the store's policy; set aside with the calls already set aside."""
        call = _call_of(effect)
        payload = effect_payload(at, effect)
        if call in self.set_aside_calls:
            error = RuntimeError(f"an earlier event of call {call} was set aside")
            await set_aside(self.services.sessions, SOURCE, payload, error, self.services.metrics)
            return
        stored = await store_or_set_aside(
            self.services.sessions,
            SOURCE,
            payload,
            lambda: self.apply(effect, through=at),
            metrics=self.services.metrics,
            logger=log,
            passes=(LeaseLost,),
        )
        if not stored and call:
            self.set_aside_calls.add(call)

    async def apply(self, *effects: Effect, through: float = 0.0) -> None:
        """Write effects in one transaction; count what the rows say was not counted yet.

        `through` is the Asterisk time of the last effect's event, for the lease: the
        transaction is fenced by it (LeaseLost when another process owns the tracking).
        An AgentLeg is for the screens, not the store: it is skipped here.

        Each statement costs about a millisecond of CPU through the asyncio layer,
        whatever its size (bench/README.md), so a batch is a few statements, not a few per
        call: the new rows, the routes, the rows the answers decide, the answers (one
        executemany), the rows the ends decide (read after the answers, which they may
        show) with the hoppers made of them, the ends, the hearings. An answer or an end
        is counted when its guarded update (``answered_by = ''``, ``outcome = ''``)
        changes its row. Which ones will is decided from the rows read, and the updates'
        row counts must agree; if they do not (another writer decided a row meanwhile: a
        replay of set-aside events), the transaction is rolled back and written again with
        each update alone, its own row count deciding, as one by one it always was.
        """
        try:
            await self._apply(effects, through, together=True)
        except _Raced:
            log.info("call rows decided by another writer meanwhile; writing one by one")
            await self._apply(effects, through, together=False)

    async def _apply(self, effects: Sequence[Effect], through: float, together: bool) -> None:
        # One job of the call path's writer (cti/store/writer.py): the batch's statements
        # in one hop to the driver, its commit shared with the hoppers of the moment.
        counts = await self.services.writer.transaction(
            partial(self._write, effects=effects, through=through, together=together)
        )
        # Only after the commit: a count without its row would be counted again next time.
        for count in counts:
            count()

    def _write(
        self, connection: Connection, *, effects: Sequence[Effect], through: float, together: bool
    ) -> list[Callable[[], None]]:
        """The writer's job for `_apply`: the counts to make once it is committed."""
        counts: list[Callable[[], None]] = []
        started = [effect for effect in effects if isinstance(effect, Started)]
        routed = [effect for effect in effects if isinstance(effect, Routed)]
        answered = [effect for effect in effects if isinstance(effect, Answered)]
        ended = [effect for effect in effects if isinstance(effect, Ended)]
        self.lease.fenced(connection, through)
        if started:
            connection.execute(
                insert_or_skip(connection, CALLS, "uniqueid"),
                [
                    {
                        "uniqueid": effect.uniqueid,
                        "linkedid": effect.linkedid,
                        "entry": effect.entry,
                        "caller": effect.caller,
                        "started_at": _utc(effect.at),
                    }
                    for effect in started
                ],
            )
        if routed:
            connection.execute(
                ROUTE,
                [{"b_call": effect.uniqueid, "b_route": effect.route} for effect in routed],
            )
        # Together only where the driver tells the rows an executemany changed
        # (SQLite's does; asyncpg's does not: on PostgreSQL one update each).
        together = together and connection.dialect.supports_sane_multi_rowcount
        if answered:
            decisions = self._answers(connection, answered)
            for done in self._update(connection, ANSWER, decisions, together):
                counts.append(done.count)
        if ended:
            decisions = self._ends(connection, ended)
            hearings: list[dict[str, Any]] = []
            for done in self._update(connection, END, decisions, together):
                counts.append(done.count)
                hearings += done.hearings
            if hearings:
                connection.execute(insert(HEARINGS), hearings)
        return counts

    def _update(
        self,
        connection: Connection,
        statement: Any,
        decisions: list[_Decision],
        together: bool,
    ) -> list[_Decision]:
        """Run a guarded update per decision; the decisions whose rows it changed."""
        if not decisions:
            return []
        if together:
            result = connection.execute(statement, [d.params for d in decisions])
            if _rowcount(result) != len(decisions):
                raise _Raced
            return decisions
        return [
            decision
            for decision in decisions
            if _rowcount(connection.execute(statement, decision.params)) == 1
        ]

    def _rows(self, connection: Connection, calls: list[str]) -> dict[str, Any]:
        """The calls rows of `calls` as they are now, by uniqueid."""
        rows: dict[str, Any] = {}
        for chunk in _chunks(list(dict.fromkeys(calls))):
            for row in connection.execute(DECIDED, {"b_calls": chunk}):
                rows[row.uniqueid] = row
        return rows

    def _answers(self, connection: Connection, answered: Sequence[Answered]) -> list[_Decision]:
        """The answers that decide their rows (answered_by still empty), in event order."""
        metrics = self.services.metrics
        rows = self._rows(connection, [answer.uniqueid for answer in answered])
        decisions: list[_Decision] = []
        seen: set[str] = set()
        for answer in answered:
            row = rows.get(answer.uniqueid)
            if row is None or row.answered_by or answer.uniqueid in seen:
                continue  # not a call we record, or answered and counted before
            seen.add(answer.uniqueid)
            params = {
                "b_call": answer.uniqueid,
                "b_team": answer.team,
                "b_agent": answer.agent,
                "b_wait": answer.wait_seconds,
            }
            count = partial(metrics.call_answered, answer.team, answer.wait_seconds)
            decisions.append(_Decision(params, count))
        return decisions

    def _ends(self, connection: Connection, ended: Sequence[Ended]) -> list[_Decision]:
        """The ends that decide their rows (outcome still empty), in event order."""
        metrics = self.services.metrics
        rows = self._rows(connection, [effect.uniqueid for effect in ended])
        hoppers = self._hoppers(connection, ended)
        decisions: list[_Decision] = []
        seen: set[str] = set()
        for effect in ended:
            row = rows.get(effect.uniqueid)
            if row is None or row.outcome or effect.uniqueid in seen:
                continue  # not a call we record, or decided and counted before (a reconnect)
            seen.add(effect.uniqueid)
            outcome, team = effect.outcome, effect.team
            # A hopper made by this call (outcome "hopper"), or an open one this call was
            # linked to as a repeat contact (outcome "repeat": the caller is already
            # promised a callback, so the call is neither abandoned nor a second request).
            hopper = hoppers.get(effect.uniqueid)
            if hopper is not None:
                kind, team = hopper
                outcome = "hopper" if kind == "created" else "repeat"
            elif effect.outcome == "abandoned" and not effect.team and effect.route in ROUTES:
                outcome = effect.route
            params = {
                "b_call": effect.uniqueid,
                "b_outcome": outcome,
                "b_team": team,
                "b_ended_at": _utc(effect.at),
                "b_agent": effect.agent or row.agent,
                "b_wait": effect.wait_seconds
                if effect.wait_seconds is not None
                else row.wait_seconds,
                "b_steps": list(effect.steps) or None,
            }
            # Reached a person's line (the KCC, a team, or their callback offer) or not.
            result = "went_on" if team or effect.route == "kcc" else "saved"
            hearings = [
                {
                    "item": item,
                    "call_uniqueid": effect.uniqueid,
                    "result": result,
                    "at": _utc(effect.at),
                }
                for item in effect.heard
            ]
            count = partial(_count_end, metrics, effect, outcome, team)
            decisions.append(_Decision(params, count, hearings))
        return decisions

    def _hoppers(
        self, connection: Connection, ended: Sequence[Ended]
    ) -> dict[str, tuple[str, str]]:
        """For each ending call, the last hopper event made of it or linked to it as a
        repeat contact, (kind, team), by call uniqueid (a hopper may name any channel of
        the call)."""
        channels = list(dict.fromkeys(u for effect in ended for u in effect.uniqueids))
        # Each channel's last hopper event (the highest id: the newest).
        latest: dict[str, tuple[int, str, str]] = {}
        for chunk in _chunks(channels):
            for event in connection.execute(HOPPERS_OF, {"b_channels": chunk}):
                newest = latest.get(event.call_uniqueid)
                if newest is None or event.id > newest[0]:
                    latest[event.call_uniqueid] = (event.id, event.kind, event.team_id)
        hoppers: dict[str, tuple[str, str]] = {}
        if latest:
            for effect in ended:
                found = [latest[u] for u in effect.uniqueids if u in latest]
                if found:
                    _, kind, team = max(found)
                    hoppers[effect.uniqueid] = (kind, team)
        return hoppers


class _Raced(Exception):
    """A batch's guarded updates changed fewer rows than its read of them said."""


@dataclasses.dataclass
class _Decision:
    """An answer or an end that decides its row: its guarded update's parameters, what
    it counts once its row changed, and (an end) the hearings then written."""

    params: dict[str, Any]
    count: Callable[[], None]
    hearings: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _count_end(metrics: BereikMetrics, effect: Ended, outcome: str, team: str) -> None:
    metrics.call_offered(effect.entry_kind)
    if outcome == "abandoned" and team:
        metrics.call_abandoned(team)
    for to_team, transfer_result in effect.transfers:
        metrics.transfer(to_team, transfer_result)


def _chunks(values: list[str]) -> list[list[str]]:
    return [values[i : i + IN_CHUNK] for i in range(0, len(values), IN_CHUNK)]


def _call_of(effect: Effect) -> str:
    return str(getattr(effect, "uniqueid", ""))


def effect_payload(at: float, effect: Effect) -> dict[str, Any]:
    """An effect as the set_aside table keeps it (JSON)."""
    return {"effect": type(effect).__name__, "event_at": at, **dataclasses.asdict(effect)}


def payload_effect(payload: Mapping[str, Any]) -> tuple[float, Effect]:
    """The effect a set-aside payload holds (`effect_payload` undone)."""
    fields = {k: v for k, v in payload.items() if k not in ("effect", "event_at")}
    kind = {"Started": Started, "Answered": Answered, "Routed": Routed, "Ended": Ended}[
        payload["effect"]
    ]
    if kind is Ended:
        fields["uniqueids"] = tuple(fields["uniqueids"])
        fields["transfers"] = tuple(tuple(t) for t in fields["transfers"])
        fields["heard"] = tuple(fields.get("heard", ()))
        fields["steps"] = tuple(fields.get("steps", ()))
    return float(payload["event_at"]), kind(**fields)


async def replay(services: Services, payload: Mapping[str, Any]) -> None:
    """`bereik events retry`: write one set-aside call event (no lease: rows are
    idempotent, and the process that set it aside may have stopped)."""
    at, effect = payload_effect(payload)
    await CallListener(services).apply(effect, through=at)


def _event_time(event: Message) -> float:
    """The event's Asterisk time (manager.conf timestampevents), else this clock's."""
    try:
        return float(event.get("Timestamp") or time.time())
    except (TypeError, ValueError):
        return time.time()


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
