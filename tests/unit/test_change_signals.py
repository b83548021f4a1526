"""The call path's caches: trusted only while the database signals no change (migration
0010), on SQLite and on PostgreSQL, whoever makes the change."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, func, select, update

from cti.hoppers.callers import open_callers
from cti.store.cache import Caches, Notifications, Signals, signals_for
from cti.store.db import create_engine, sessions
from cti.store.models import Announcement, Hopper
from cti.store.writer import Writer


async def _until_changed(signals: Signals, table: str, before: object) -> None:
    """PostgreSQL delivers a NOTIFY at commit, asynchronously: wait for it (SQLite's
    counter is read synchronously, already changed)."""
    for _ in range(500):
        if signals.token(table) != before:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no change signal for {table}")


async def test_a_cached_lookup_is_read_once_and_again_after_a_change_by_another_process(
    store_url: str,
) -> None:
    signals = signals_for(store_url)
    assert signals is not None
    if isinstance(signals, Notifications):
        signals.start()
        await _until_changed(signals, "announcements", None)
    ours, theirs = create_engine(store_url), create_engine(store_url)
    caches = Caches(signals)
    mine = Writer(ours)
    loads = 0

    def count(conn: Connection, *, previous: int | None) -> int:
        nonlocal loads
        loads += 1
        return int(conn.execute(select(func.count()).select_from(Announcement)).scalar() or 0)

    try:
        assert await caches.get(mine, "announcements", count) == 0
        assert await caches.get(mine, "announcements", count) == 0
        assert loads == 1
        # Another process (the command line, a second serve) adds one.
        before = signals.token("announcements")
        async with sessions(theirs)() as session:
            session.add(Announcement(kind="news", audio="a1"))
            await session.commit()
        await _until_changed(signals, "announcements", before)
        assert await caches.get(mine, "announcements", count) == 1
        # This process ends it: an update counts as a change too.
        before = signals.token("announcements")
        async with sessions(ours)() as session:
            await session.execute(update(Announcement).values(ended_at=datetime.now(UTC)))
            await session.commit()
        await _until_changed(signals, "announcements", before)
        assert await caches.get(mine, "announcements", count) == 1
        assert loads == 3
        # A change to another table leaves the entry as it is.
        async with sessions(theirs)() as session:
            session.add(
                Hopper(
                    team_id="kcc",
                    caller="0612345678",
                    reason="manual",
                    deadline=datetime.now(UTC) + timedelta(days=2),
                )
            )
            await session.commit()
        assert await caches.get(mine, "announcements", count) == 1
        assert loads == 3
    finally:
        if isinstance(signals, Notifications):
            await signals.close()
        else:
            signals.close()
        await ours.dispose()
        await theirs.dispose()


async def test_without_change_signals_every_lookup_reads_the_database(store_url: str) -> None:
    # A PostgreSQL listener that is not (yet) up, or a database without the counters.
    signals = signals_for(store_url)
    engine = create_engine(store_url)
    caches = Caches(signals if isinstance(signals, Notifications) else None)
    loads = 0

    def count(conn: Connection, *, previous: int | None) -> int:
        nonlocal loads
        loads += 1
        return 0

    try:
        for _ in range(3):
            await caches.get(Writer(engine), "announcements", count)
        assert loads == 3
    finally:
        await engine.dispose()


async def test_the_ivr_knows_a_caller_whose_hopper_was_made_after_the_set_was_read(
    store_url: str,
) -> None:
    engine = create_engine(store_url)
    store = sessions(engine)

    async def add(caller: str) -> None:
        async with store() as session:
            session.add(
                Hopper(
                    team_id="kcc",
                    caller=caller,
                    reason="manual",
                    deadline=datetime.now(UTC) + timedelta(days=2),
                )
            )
            await session.commit()

    try:
        await add("0611111111")
        async with store() as session:
            first = await session.run_sync(lambda s: open_callers(s.connection(), previous=None))
        assert first.callers == {"0611111111"}
        await add("0622222222")
        async with store() as session:
            second = await session.run_sync(lambda s: open_callers(s.connection(), previous=first))
        assert second.callers == {"0611111111", "0622222222"}
        assert second.read_at == first.read_at  # only the new ones were read
    finally:
        await engine.dispose()
