"""The call path's writer: jobs that arrive together share one commit, each gets its own
answer only once stored, and one job's error reaches that job's caller only."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from cti.store.db import create_engine
from cti.store.writer import Job, Writer

METADATA = MetaData()
ROWS = Table(
    "rows",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("name", String(8), unique=True),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path}/w.db")
    async with engine.begin() as conn:
        await conn.run_sync(METADATA.create_all)
    yield engine
    await engine.dispose()


def add(name: str) -> Job[int]:
    def job(conn: Connection) -> int:
        return int(conn.execute(insert(ROWS).values(name=name).returning(ROWS.c.id)).scalar_one())

    return job


async def stored(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(select(ROWS.c.name))).scalars())


async def test_callers_arriving_together_share_one_commit_and_each_gets_its_own_row(
    engine: AsyncEngine,
) -> None:
    writer = Writer(engine)
    ids = await asyncio.gather(*(writer.transaction(add(f"n{i}")) for i in range(20)))
    assert len(set(ids)) == 20
    assert await stored(engine) == {f"n{i}" for i in range(20)}
    # All twenty were queued before the writer's task ran: one commit carries them.
    assert writer.jobs == 20
    assert writer.commits == 1


async def test_a_lone_caller_is_not_kept_waiting_for_company(engine: AsyncEngine) -> None:
    writer = Writer(engine)
    assert await writer.transaction(add("alone")) > 0
    assert writer.commits == 1


async def test_one_callers_error_reaches_that_caller_and_the_others_are_stored(
    engine: AsyncEngine,
) -> None:
    writer = Writer(engine)
    await writer.transaction(add("taken"))
    results = await asyncio.gather(
        writer.transaction(add("a")),
        writer.transaction(add("b")),
        writer.transaction(add("taken")),  # the unique index refuses this one
        writer.transaction(add("c")),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [int, int, IntegrityError, int]
    assert await stored(engine) == {"taken", "a", "b", "c"}


async def test_no_caller_is_answered_before_the_commit_that_holds_its_row(
    engine: AsyncEngine,
) -> None:
    writer = Writer(engine)
    missing: list[str] = []

    async def confirm(name: str) -> None:
        await writer.transaction(add(name))
        # Read on a connection of its own: what the caller is told is already committed.
        if name not in await stored(engine):
            missing.append(name)

    await asyncio.gather(*(confirm(f"c{i}") for i in range(5)))
    assert missing == []


async def test_a_store_that_is_down_reaches_every_caller_at_once_not_one_after_another(
    engine: AsyncEngine,
) -> None:
    writer = Writer(engine)
    runs: list[str] = []

    def down(name: str) -> Job[int]:
        def job(conn: Connection) -> int:
            runs.append(name)
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))

        return job

    results = await asyncio.gather(
        *(writer.transaction(down(f"d{i}")) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(result, OperationalError) for result in results)
    assert runs == ["d0"]  # the batch stopped at the first; nobody was tried alone after
