"""The call path's writer: transactions that arrive together share one commit, each run
on the database driver's own thread without a hop per statement.

A caller's request (a hopper confirmed on the phone) is a short transaction of a few
statements. Through SQLAlchemy's asyncio layer each statement costs several hops between
the event loop and the driver's thread (cursor, execute, fetch, close: about forty for a
hopper on aiosqlite), which cost more CPU than SQLite's own work, and the commit as much
again. So:

* **One hop per batch.** A job is a plain synchronous function of a SQLAlchemy
  `Connection` (Core statements). On SQLite the whole batch runs on aiosqlite's worker
  thread, the thread that owns the one connection (cti/store/db.py), through a
  synchronous engine over that same connection: one hop there and back for the batch,
  the same connection and lock as every other writer of the process. On PostgreSQL (or
  if aiosqlite no longer offers its thread) the batch runs through `run_sync`, the
  asyncio layer's bridge, as any other transaction.
* **Group commit.** `Writer.transaction` queues a job; one task runs the queued jobs in
  turn inside one transaction and commits once. Nothing waits for company: the first job
  starts at once, and the jobs that arrive while a commit is under way go in the next one,
  so a quiet exchange pays no latency and a busy one pays one commit for a burst.

Each job gets its result (or its exception) only after the commit that holds it, so
nothing is confirmed to a caller before it is stored. When a batch fails, no job in it
was stored: each is run again alone, so one job's error (a unique index, a bad value)
reaches that job's caller only; a store that is down (cti/store/db.py `store_down`)
reaches every caller of the batch at once, as it would without the writer (their own
policy decides: a fallback on the phone, a retry), not one after the other.

A job runs once its turn comes even if its caller stopped waiting (a caller who hung up
during the confirmation still gets the hopper the confirmation promised); a cancelled
caller's job is stored or not, and nobody is told. A job must not block on anything but
the database: it runs on the driver's thread, which every other query of the process waits
for meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import StaticPool

from cti.store.db import store_down

log = logging.getLogger("bereik.store")

T = TypeVar("T")
Job = Callable[[Connection], T]
# Jobs in one transaction at most: a long batch holds SQLite's one connection (and
# PostgreSQL's row locks) for everyone else.
BATCH = 64


@dataclass
class _Queued(Generic[T]):
    job: Job[T]
    done: asyncio.Future[T]


class Writer:
    """Group commit over one engine (see the module docstring)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._queue: list[_Queued[Any]] = []
        self._task: asyncio.Task[None] | None = None
        # The synchronous engine over aiosqlite's connection, made for the connection it
        # wraps (the pool replaces an invalidated connection: a new engine then).
        self._sync: tuple[sqlite3.Connection, Engine] | None = None
        # Commits made and jobs they carried: what the unit tests and the bench read.
        self.commits = 0
        self.jobs = 0

    async def transaction(self, job: Job[T]) -> T:
        """Run `job` in a transaction shared with the jobs queued beside it; its result
        once that transaction committed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._queue.append(_Queued(job, done))
        # A command-line tool may run several event loops in turn: a task of a loop that
        # is gone drains nothing.
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        batch: list[_Queued[Any]] = []
        try:
            while self._queue:
                batch, self._queue[:] = self._queue[:BATCH], self._queue[BATCH:]
                await self._commit(batch)
                batch = []
        except asyncio.CancelledError:
            # The process stops: nobody is left waiting for an answer that never comes.
            for queued in [*batch, *self._queue]:
                queued.done.cancel()
            self._queue.clear()
            raise

    async def _commit(self, batch: list[_Queued[Any]]) -> None:
        jobs = [queued.job for queued in batch]
        try:
            async with self.engine.connect() as conn:
                results = await self._run(conn, jobs)
        except Exception as exc:
            # Policy: the caller's own. Nothing of the batch was stored; a job alone
            # hands its error to the one caller who waits for it (the supervisor is not
            # involved: this task never raises, every waiting caller gets an answer).
            if len(batch) == 1 or store_down(exc):
                # Alone, or the store is down (alone each would fail the same way, one
                # after the other, each caller waiting for the ones before it): every
                # caller gets the error now, and their own policy decides (the dialplan's
                # fallback for a caller on the phone, a wait and retry for a worker).
                for queued in batch:
                    _settle(queued.done, exc=exc)
                return
            log.info("a shared commit of %d jobs failed (%s): each alone", len(batch), exc)
            for queued in batch:
                await self._commit([queued])
            return
        self.commits += 1
        self.jobs += len(batch)
        for queued, result in zip(batch, results, strict=True):
            _settle(queued.done, result=result)

    async def _run(self, conn: AsyncConnection, jobs: Sequence[Job[Any]]) -> list[Any]:
        raw = (await conn.get_raw_connection()).driver_connection
        # aiosqlite's Connection runs every call on its own thread through `_execute`,
        # and keeps the sqlite3 connection as `_conn` (private names, stable since 0.16;
        # without them the batch takes the asyncio bridge, which is only slower).
        execute = getattr(raw, "_execute", None)
        sqlite = getattr(raw, "_conn", None)
        if callable(execute) and isinstance(sqlite, sqlite3.Connection):
            results: list[Any] = await execute(self._in_thread, sqlite, jobs)
            return results
        async with conn.begin():
            return await conn.run_sync(_all, jobs)

    def _in_thread(self, sqlite: sqlite3.Connection, jobs: Sequence[Job[Any]]) -> list[Any]:
        """On aiosqlite's thread: the batch in one transaction on its connection."""
        if self._sync is None or self._sync[0] is not sqlite:
            engine = create_engine(
                "sqlite://", creator=lambda: sqlite, poolclass=StaticPool, future=True
            )
            self._sync = (sqlite, engine)
        with self._sync[1].begin() as conn:
            return _all(conn, jobs)


def _all(conn: Connection, jobs: Sequence[Job[Any]]) -> list[Any]:
    return [job(conn) for job in jobs]


def _settle(
    done: asyncio.Future[Any], *, result: Any = None, exc: BaseException | None = None
) -> None:
    if done.done():  # the waiting caller was cancelled; the outcome is stored or not
        return
    if exc is None:
        done.set_result(result)
    else:
        done.set_exception(exc)
