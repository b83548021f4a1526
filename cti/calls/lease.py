"""One owner of the AMI call tracking per Asterisk: a lease row with a fencing number.

Every `bereik serve` follows AMI (its screens and gauges need the events), but only the
owner of the lease writes the calls rows and counts them. With several processes on one
PostgreSQL database:

* the owner raises `beat` every BEAT_SECONDS; a standby reads the row as often and takes
  over when `beat` stood still for EXPIRE_SECONDS on its own monotonic clock, so no two
  hosts' clocks are compared. A `kill -9` of the owner is taken over within
  EXPIRE_SECONDS + BEAT_SECONDS; a SIGTERM releases the lease and the standby takes over
  at its next look;
* each change of owner raises `fence`. The owner's every batch of call rows checks its
  fence in the same transaction (`fenced`), so an owner that lost the lease without
  knowing it (paused, cut off from the database) cannot write after its successor began;
* `written_through` is the Asterisk time of the owner's last stored event. A standby keeps
  the effects it computed from that time on, and writes them when it takes over: the calls
  of the gap (the owner's unwritten batch, the seconds before the takeover) are written by
  the new owner, and writing an effect twice is harmless (cti/calls/listener.py).

What a process pushes to Asterisk to make it match the database (the queue's members,
the agents' shared device states) is pushed by the owner alone (`owner_duty`): on each of
its AMI (re)connects, and when it takes the lease, so a standby that takes over pushes it
too. Every process pushing on every connect would race: one process's connect removing a
member that another had just added.

On SQLite one process is the owner trivially (`TrackingLease.sole`): no row, no check.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import cast

from sqlalchemy import Connection, Table, select, update
from sqlalchemy.exc import SQLAlchemyError

from cti.ami.nodes import Ami
from cti.store.db import STORE_DOWN, Sessions, insert_or_skip, store_down
from cti.store.faults import describe, until_stored
from cti.store.models import TrackingLease as LeaseRow

log = logging.getLogger("bereik.calls.lease")

BEAT_SECONDS = 1.0
# A beat standing still this long means the owner is gone. Well above a busy loop's
# stall on a loaded machine, well under the 10 s for a takeover.
EXPIRE_SECONDS = 5.0
LEASES = cast(Table, LeaseRow.__table__)

Duty = Callable[[], Awaitable[None]]


class LeaseLost(Exception):
    """The fence moved on: another process owns the call tracking now."""


class LeaseDutyFailed(Exception):
    """A push on taking the lease failed for a reason other than the store being down:
    raised by `run` to the supervisor, whose restart pushes again."""


class TrackingLease:
    def __init__(self, sessions: Sessions | None, name: str, holder: str = "") -> None:
        self.sessions = sessions
        self.name = name
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.fence: int | None = None
        self.owned = asyncio.Event()
        # The owner's last stored Asterisk time, as a standby last read it.
        self.written_through = 0.0
        # Called on taking the lease (the listener resyncs from CoreShowChannels).
        self.on_acquired: list[Callable[[], Awaitable[None]]] = []
        self._seen: tuple[int, int] | None = None
        self._seen_since = 0.0
        self._duties: set[asyncio.Task[None]] = set()
        # A duty's failure, for `run` to raise; after that restart, the duties run again.
        self._duty_failed: LeaseDutyFailed | None = None
        self._duties_again = False
        if sessions is None:
            self.fence = 0
            self.owned.set()

    @classmethod
    def sole(cls) -> TrackingLease:
        """The only process there is (SQLite): the owner from the start, nothing checked."""
        return cls(None, "")

    @classmethod
    def for_store(cls, sessions: Sessions, url: str, name: str) -> TrackingLease:
        if url.startswith("postgresql"):
            return cls(sessions, name)
        return cls.sole()

    @property
    def shared(self) -> bool:
        return self.sessions is not None

    def owner_duty(self, ami: Ami, name: str, duty: Duty) -> None:
        """Run `duty` (a push of state to Asterisk) in the owner only: on each AMI connect
        while this process owns the lease, and on taking the lease while AMI is up.

        On taking the lease it runs as a task of its own: the AMI actions it sends may be
        slow, and the owner's beat must go on meanwhile or the lease would run out.
        """

        async def on_connected() -> None:
            if self.owned.is_set():
                await duty()
            else:
                log.info("%s: left to the call tracking owner", name)

        async def on_acquired() -> None:
            if not ami.connected:
                return  # the connect to come runs it
            task = asyncio.create_task(self._logged(name, duty), name=name)
            self._duties.add(task)
            task.add_done_callback(self._duties.discard)

        ami.on_connected.append(on_connected)
        self.on_acquired.append(on_acquired)

    async def _logged(self, name: str, duty: Duty) -> None:
        # A task of its own, so the beat goes on meanwhile: a store that is down is waited
        # out by the store's policy (the push reads the database), and only while this
        # process still owns the tracking; any other fault (Asterisk refusing an action)
        # is handed to `run`, which raises it to the supervisor: the lease shows down, and
        # its restart pushes again (before, it waited for the next AMI connect).
        async def while_owner() -> None:
            if self.owned.is_set():
                await duty()

        try:
            await until_stored(while_owner, what=name, logger=log)
        except Exception as exc:  # the supervisor's, through `run`
            log.exception("%s failed on taking the lease", name)
            if self._duty_failed is None:
                self._duty_failed = LeaseDutyFailed(f"{name}: {describe(exc)}")
                self._duty_failed.__cause__ = exc

    async def run(self) -> None:
        """Beat while owner, watch while standby. A store that is down is tried again at
        the next beat (the beat stands still meanwhile, as the standby then sees); any
        other fault raises, a failed push on taking the lease too (`_logged`), and the
        supervisor restarts this after its backoff (then pushing again)."""
        if self.sessions is None:
            return
        if self._duties_again:  # restarted after a duty failed: the duties again
            self._duties_again = False
            if self.owned.is_set():
                for acquired in self.on_acquired:
                    await acquired()
        while True:
            failed, self._duty_failed = self._duty_failed, None
            if failed is not None:
                self._duties_again = True
                raise failed
            try:
                if self.owned.is_set():
                    await self._beat()
                else:
                    await self._watch()
            except STORE_DOWN as exc:
                log.warning("lease %s: %s", self.name, describe(exc))
            except SQLAlchemyError as exc:
                if not store_down(exc):
                    raise
                log.warning("lease %s: %s", self.name, describe(exc))
            await asyncio.sleep(BEAT_SECONDS)

    def fenced(self, connection: Connection, written_through: float) -> None:
        """In the writer's transaction (a job of cti/store/writer.py): still the owner?
        Raises LeaseLost if not.

        The UPDATE locks the row until the transaction ends, so a takeover waits for the
        batch in flight and the batch is wholly before it.
        """
        if self.sessions is None:
            return
        result = connection.execute(
            update(LEASES)
            .where(LEASES.c.name == self.name, LEASES.c.fence == self.fence)
            .values(written_through=written_through)
        )
        if _rowcount(result) != 1:
            raise LeaseLost(self.name)

    def lost(self) -> None:
        if self.owned.is_set():
            log.warning("lease %s: fence %s taken over; standing by", self.name, self.fence)
        self.owned.clear()
        self.fence = None
        self._seen = None

    async def release(self) -> None:
        """On a clean stop: the standby need not wait for the beat to stand still."""
        if self.sessions is None or not self.owned.is_set():
            return
        async with self.sessions() as session:
            await session.execute(
                update(LEASES)
                .where(LEASES.c.name == self.name, LEASES.c.fence == self.fence)
                .values(holder="")
            )
            await session.commit()
        self.owned.clear()
        log.info("lease %s released", self.name)

    async def _beat(self) -> None:
        assert self.sessions is not None
        async with self.sessions() as session:
            result = await session.execute(
                update(LEASES)
                .where(LEASES.c.name == self.name, LEASES.c.fence == self.fence)
                .values(beat=LEASES.c.beat + 1)
            )
            await session.commit()
        if _rowcount(result) != 1:
            self.lost()

    async def _watch(self) -> None:
        assert self.sessions is not None
        async with self.sessions() as session:
            row = (
                await session.execute(
                    select(
                        LEASES.c.fence, LEASES.c.beat, LEASES.c.holder, LEASES.c.written_through
                    ).where(LEASES.c.name == self.name)
                )
            ).first()
            if row is None:
                result = await session.execute(
                    insert_or_skip(session, LEASES, "name").values(
                        name=self.name, fence=1, holder=self.holder, beat=0, written_through=0
                    )
                )
                fence = 1
            else:
                self.written_through = row.written_through
                now = time.monotonic()
                if (row.fence, row.beat) != self._seen:
                    self._seen, self._seen_since = (row.fence, row.beat), now
                if row.holder and now - self._seen_since < EXPIRE_SECONDS:
                    return
                # Released, or the beat stood still: take it, unless someone was quicker.
                fence = row.fence + 1
                result = await session.execute(
                    update(LEASES)
                    .where(
                        LEASES.c.name == self.name,
                        LEASES.c.fence == row.fence,
                        LEASES.c.beat == row.beat,
                    )
                    .values(fence=fence, holder=self.holder, beat=0)
                )
            await session.commit()
        if _rowcount(result) != 1:
            return
        self.fence = fence
        self.owned.set()
        log.info("lease %s taken: fence %d, holder %s", self.name, fence, self.holder)
        for acquired in self.on_acquired:
            await acquired()


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
