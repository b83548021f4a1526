"""Look-ups on the call path answered from memory, reloaded when the database says so.

Every IVR call asks the same two questions: which announcements are active, and does this
caller have an open hopper. Through SQLAlchemy's asyncio layer each round trip costs about
a millisecond of CPU whatever the query (the thread hop and the ORM), several times the
FastAGI work of a whole call (bench/README.md). The answers change a few times a day, so
they are kept in memory, and the database tells when they change (migration 0010):

* SQLite: `change_counters`, bumped by triggers; read before each use through a read-only
  connection of this process's own, synchronously (microseconds: one indexed row, and in
  WAL mode a reader never waits for a writer). Exact: a change committed by anyone, in
  any process, is seen by the next call.
* PostgreSQL: the triggers' `NOTIFY bereik_changes`, received on a LISTEN connection of
  this process's own (`Notifications`). While that connection is not up, nothing is
  trusted and every use reads the database, as without a cache.

A cache entry remembers the signal's value from *before* its load: a change committed
while loading makes the entry stale at once instead of hiding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from cti.store.db import store_down
from cti.store.writer import Writer

log = logging.getLogger(__name__)
T = TypeVar("T")
CHANNEL = "bereik_changes"
TABLES = ("announcements", "hoppers")


class Loader(Protocol[T]):
    """A cached look-up: a plain function of a connection (Core statements) and the value
    it loaded last."""

    def __call__(self, conn: Connection, *, previous: T | None) -> T: ...


class Signals(Protocol):
    def token(self, table: str) -> object | None:
        """A value that differs after every committed change to `table`; None when
        unknown (the cache must not be trusted)."""
        ...


class Counters:
    """SQLite: the trigger-maintained change_counters, read through a connection of our own."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None

    def token(self, table: str) -> object | None:
        try:
            if self._connection is None:
                self._connection = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, timeout=0.05, check_same_thread=False
                )
            # fetchall: stepped to the end, the statement ends its read transaction (an open
            # one would pin this connection to an old snapshot and hold back checkpoints).
            rows = self._connection.execute(
                "SELECT value FROM change_counters WHERE name = ?", (table,)
            ).fetchall()
        except sqlite3.Error:
            self.close()  # missing table (not migrated), locked: read the database instead
            return None
        return int(rows[0][0]) if rows else None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class Notifications:
    """PostgreSQL: LISTEN bereik_changes on a connection of our own, reconnected when lost.

    `bereik serve` runs `run` under its supervisor (the part "change notifications"); a
    short command does not listen at all, and reads the database instead."""

    RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)

    def __init__(self, url: str) -> None:
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
        self.counts = dict.fromkeys(TABLES, 0)
        self.epoch = 0  # a new one per connection: what was missed meanwhile is unknown
        self.listening = False
        self._task: asyncio.Task[None] | None = None

    def token(self, table: str) -> object | None:
        return (self.epoch, self.counts.get(table, 0)) if self.listening else None

    def start(self) -> None:
        """Listen on a task of its own (a test, a bench); `bereik serve` supervises `run`."""
        self._task = asyncio.create_task(self.run(), name="bereik-change-notifications")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _notified(self, _connection: Any, _pid: int, _channel: str, table: str) -> None:
        self.counts[table] = self.counts.get(table, 0) + 1

    async def run(self) -> None:
        """Listen until cancelled. The store's policy: while the database is down or the
        connection is lost (`store_down`), nothing is trusted (every use reads the
        database) and it is reconnected with a growing pause; any other fault (ours)
        raises to the supervisor, which shows the part down and starts it again after its
        backoff. Before, that fault was logged and retried every few seconds, for ever."""
        # asyncpg comes with the postgres extra; a SQLite-only install never gets here.
        import asyncpg

        failures = 0
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(self.dsn, timeout=10)
                await connection.add_listener(CHANNEL, self._notified)
                self.epoch += 1
                self.listening = True
                failures = 0
                while not connection.is_closed():
                    await asyncio.sleep(1.0)
                    # A query now and then: a dead peer is noticed, not waited on forever.
                    await connection.fetchval("SELECT 1", timeout=5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store's policy: down waits, the rest goes up
                if not store_down(exc):
                    raise  # `finally` stops the trust first
                log.warning("change notifications lost (%s); caches bypassed until back", exc)
            finally:
                self.listening = False
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(connection.close(timeout=2))
            await asyncio.sleep(self.RETRY_SECONDS[min(failures, len(self.RETRY_SECONDS) - 1)])
            failures += 1


def signals_for(url: str) -> Counters | Notifications | None:
    """The change signals of the configured database (None: nothing is cached)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        return Counters(path) if path and path != ":memory:" else None
    if parsed.get_backend_name() == "postgresql":
        return Notifications(url)
    return None


@dataclass
class _Entry:
    token: object
    value: Any


@dataclass
class Caches:
    """Per process: one entry per loader function, valid while its table's signal holds;
    and figures shared for a few seconds (`recent`)."""

    signals: Signals | None = None
    _entries: dict[Callable[..., Any], _Entry] = field(default_factory=dict)
    _recent: dict[str, tuple[float, Any]] = field(default_factory=dict)

    async def recent(self, name: str, seconds: float, compute: Callable[[], Awaitable[T]]) -> T:
        """`compute()`'s value, computed again once it is `seconds` old: for figures whose
        every reading is a pass over many rows and that several readers want at once (each
        open board polls every 10 s). Its age counts from when the computing began."""
        now = asyncio.get_running_loop().time()
        held = self._recent.get(name)
        if held is not None and now - held[0] < seconds:
            value: T = held[1]
            return value
        value = await compute()
        self._recent[name] = (now, value)
        return value

    async def get(self, writer: Writer, table: str, load: Loader[T]) -> T:
        """`load`'s value, loaded again once `table` changed. `load` gets the value it
        loaded last (None the first time, or when nothing is trusted), so it may read only
        what is new. It runs through the call path's writer (cti/store/writer.py): one
        hop to the database driver for the whole read, as the call path's writes."""
        token = self.signals.token(table) if self.signals is not None else None
        entry = self._entries.get(load)
        if token is not None and entry is not None and entry.token == token:
            value: T = entry.value
            return value
        previous: T | None = entry.value if entry is not None and token is not None else None
        value = await writer.transaction(functools.partial(load, previous=previous))
        if token is not None:
            self._entries[load] = _Entry(token, value)
        else:
            self._entries.pop(load, None)
        return value
