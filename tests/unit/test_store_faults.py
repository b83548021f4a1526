"""The store's one fault policy: a store that is down is waited out with the work kept; a
refusal sets the one work item aside with its error, the rest goes on; a replay after the
fix writes it."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from cti.calls import listener as call_listener
from cti.calls.listener import CallListener
from cti.calls.tracker import Answered, Ended, Started
from cti.services import Services
from cti.store import faults
from cti.store.db import store_down
from cti.store.models import Base
from cti.tts import engine_for
from dialplan.config import Config
from metrics.registry import BereikMetrics

POISON = "0700000666"


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "BACKOFF_MIN", 0.01)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        # A value the schema refuses, from outside the code: this caller's row.
        await conn.execute(
            text(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON calls "
                f"WHEN NEW.caller = '{POISON}' BEGIN SELECT RAISE(ABORT, 'caller refused'); END"
            )
        )
    config = Config.model_validate({"phones": [{"extension": "2001"}], "kcc": {"agents": ["2001"]}})
    try:
        yield Services(
            config=config,
            sessions=async_sessionmaker(engine, expire_on_commit=False),
            metrics=BereikMetrics(teams=[]),
            instance_dir=tmp_path,
            tts=engine_for(config.tts),
        )
    finally:
        await engine.dispose()


def call(uniqueid: str, caller: str, at: float) -> list[tuple[float, Any]]:
    """A 14070 call answered by the KCC: its three effects, each with its time."""
    return [
        (at, Started(uniqueid, uniqueid, "14070", caller, at)),
        (at + 2, Answered(uniqueid, "kcc", "2001", 2.0)),
        (
            at + 30,
            Ended(uniqueid, (uniqueid,), "14070", "answered_kcc", "kcc", "2001", 2.0, at + 30, ()),
        ),
    ]


async def rows(services: Services, sql: str) -> list[Any]:
    async with services.sessions() as session:
        return list((await session.execute(text(sql))).all())


async def test_a_store_that_is_down_is_waited_out_and_the_work_kept() -> None:
    attempts: list[int] = []

    async def write() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return "stored"

    assert await faults.until_stored(write, what="a test item") == "stored"
    assert len(attempts) == 3


async def test_a_refusal_is_not_retried_by_the_wait() -> None:
    attempts: list[int] = []

    async def write() -> None:
        attempts.append(1)
        raise IntegrityError("INSERT", {}, Exception("NOT NULL constraint failed"))

    with pytest.raises(IntegrityError):
        await faults.until_stored(write, what="a test item")
    assert len(attempts) == 1


def test_a_read_only_server_during_a_failover_counts_as_down() -> None:
    class ReadOnly(Exception):
        sqlstate = "25006"

    wrapped = DBAPIError("INSERT", {}, ReadOnly("cannot execute INSERT in a read-only transaction"))
    assert store_down(wrapped)
    assert not store_down(IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")))


async def test_a_poison_call_is_set_aside_while_the_calls_after_it_are_written(
    services: Services,
) -> None:
    listener = CallListener(services)
    batch = call("666.0", POISON, 1000.0)
    for n in range(20):
        batch += call(f"{n}.0", f"06000000{n:02d}", 1001.0 + n)
    batch.sort(key=lambda item: item[0])  # as the events came: the calls interleave
    assert await listener._apply_until_stored(batch)

    written = await rows(services, "SELECT caller, outcome FROM calls ORDER BY started_at")
    assert len(written) == 20
    assert all(outcome == "answered_kcc" for _, outcome in written)
    assert POISON not in {caller for caller, _ in written}
    # The call's three effects are aside, in order; the first with the store's refusal.
    aside = await faults.listing(services.sessions)
    assert [(row.source, row.payload["effect"]) for row in aside] == [
        ("call events", "Started"),
        ("call events", "Answered"),
        ("call events", "Ended"),
    ]
    assert "caller refused" in aside[0].error
    assert aside[0].payload["caller"] == POISON
    counted = services.metrics.registry.get_sample_value(
        "bereik_set_aside_total", {"source": "call events"}
    )
    assert counted == 3

    # Refused again while the fault is still there: it stays aside with the error.
    replayer = {"call events": functools.partial(call_listener.replay, services)}
    again = await faults.replay(services.sessions, replayer)
    assert [result.ok for result in again] == [False, False, False]
    assert len(await faults.listing(services.sessions)) == 3

    async with services.sessions() as session:
        await session.execute(text("DROP TRIGGER refuse_poison"))
        await session.commit()
    replayed = await faults.replay(services.sessions, replayer)
    assert [result.ok for result in replayed] == [True, True, True], replayed
    assert await rows(
        services, f"SELECT outcome, answered_by FROM calls WHERE caller = '{POISON}'"
    ) == [("answered_kcc", "kcc")]
    assert await faults.listing(services.sessions) == []
    kept = await faults.listing(services.sessions, all_rows=True)
    assert all(row.replayed_at is not None for row in kept)
    assert [row.retries for row in kept] == [2, 1, 1]  # the first was refused once more


async def test_bereik_events_lists_what_is_set_aside_and_retry_writes_it_after_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bereik.cli import main
    from cti.services import open_services
    from dialplan.config import load

    path = tmp_path / "bereik.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/bereik.db"\n'
        f'[asterisk]\ninstance_dir = "{tmp_path}/asterisk"\n'
    )
    async with open_services(load(path)) as services:
        async with services.sessions() as session:
            await session.execute(
                text(
                    "CREATE TRIGGER refuse_poison BEFORE INSERT ON calls "
                    f"WHEN NEW.caller = '{POISON}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
            await session.commit()
        listener = CallListener(services)
        assert await listener._apply_until_stored(call("666.0", POISON, 1000.0))

    assert await asyncio.to_thread(main, ["events", "list", "--config", str(path)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 3
    assert "call events" in listed[0] and "Started" in listed[0] and "refused" in listed[0]
    assert POISON not in "\n".join(listed)  # the number stays in the database

    assert await asyncio.to_thread(main, ["events", "retry", "--config", str(path)]) == 1
    assert "still aside" in capsys.readouterr().out

    async with open_services(load(path)) as services:
        async with services.sessions() as session:
            await session.execute(text("DROP TRIGGER refuse_poison"))
            await session.commit()
    assert await asyncio.to_thread(main, ["events", "retry", "--config", str(path)]) == 0
    assert capsys.readouterr().out.count("written") == 3
    async with open_services(load(path)) as services:
        assert await rows(services, "SELECT caller, outcome FROM calls") == [
            (POISON, "answered_kcc")
        ]
    assert await asyncio.to_thread(main, ["events", "list", "--config", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "nothing set aside"


async def test_retention_purges_what_was_set_aside_with_the_calls(services: Services) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from cti import retention
    from cti.store.models import SetAside

    old = await faults.set_aside(
        services.sessions, "call events", {"caller": POISON}, ValueError("refused")
    )
    new = await faults.set_aside(
        services.sessions, "call events", {"caller": POISON}, ValueError("refused")
    )
    later = datetime.now(UTC) + timedelta(days=services.config.retention.call_days)
    async with services.sessions() as session:
        before = later - timedelta(days=services.config.retention.call_days + 1)
        await session.execute(
            update(SetAside).where(SetAside.id == old).values(set_aside_at=before)
        )
        await session.commit()
    purged = await retention.purge(services, now=later - timedelta(minutes=1))
    assert purged.set_aside == 1
    assert [row.id for row in await faults.listing(services.sessions, all_rows=True)] == [new]


async def test_a_set_aside_call_s_later_events_in_a_later_batch_follow_it_aside(
    services: Services,
) -> None:
    listener = CallListener(services)
    poison = call("666.0", POISON, 1000.0)
    normal = call("1.0", "0600000001", 1000.5)
    assert await listener._apply_until_stored([poison[0], normal[0]])
    # The answer and the end come in the next batch: written alone they would find no
    # row and be lost; they follow the call's start aside instead.
    assert await listener._apply_until_stored([poison[1], normal[1], poison[2], normal[2]])
    aside = await faults.listing(services.sessions)
    assert [row.payload["effect"] for row in aside] == ["Started", "Answered", "Ended"]
    assert await rows(services, "SELECT caller, outcome FROM calls") == [
        ("0600000001", "answered_kcc")
    ]


async def test_a_batch_is_kept_pending_when_even_setting_it_aside_fails(
    services: Services,
) -> None:
    listener = CallListener(services)
    async with services.sessions() as session:
        await session.execute(text("DROP TABLE set_aside"))  # the schema broken worse
        await session.commit()
    for item in call("666.0", POISON, 1000.0):
        listener.pending.append(item)
    with pytest.raises(Exception, match="set_aside"):
        await listener._write_batch()  # the supervisor restarts the listener
    assert len(listener.pending) == 3  # nothing lost: written by the next run


def test_sqlite_s_busy_file_waits_but_a_missing_table_does_not() -> None:
    import sqlite3

    locked = OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
    missing = OperationalError("INSERT", {}, sqlite3.OperationalError("no such table: calls"))
    assert store_down(locked)
    assert not store_down(missing)
