"""The waiting line's events written: a stay decided once with its wait from the caller's
arrival, the agent on a call and in wrap-up, without reading a row this process made; a
row made by another process (or before a restart) is read instead."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from panoramisk.message import Message
from sqlalchemy import Engine, event, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from cti.queue import events as queue_events
from cti.queue import service
from cti.queue.events import QueueEvents, joined_known, record_arrival
from cti.services import Services
from cti.store.models import AgentState, QueueCall, VirtualHold
from dialplan.config import Config
from tests.support.memory_services import memory_services

CONFIG = Config.model_validate(
    {
        "kcc": {"agents": ["2001"], "mode": "queue"},
        "phones": [{"extension": "2001"}],
        "queue": {"wrapup_seconds": 5},
    }
)
ARRIVED = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return str((ARRIVED + timedelta(seconds=seconds)).timestamp())


def answered(seconds: float) -> Message:
    return Message(
        {
            "Event": "AgentConnect",
            "Queue": "kcc",
            "Uniqueid": "1.1",
            "Interface": "PJSIP/2001",
            "Timestamp": at(seconds),
        }
    )


def completed(seconds: float) -> Message:
    return Message(
        {
            "Event": "AgentComplete",
            "Queue": "kcc",
            "Uniqueid": "1.1",
            "Interface": "PJSIP/2001",
            "TalkTime": "42",
            "Timestamp": at(seconds),
        }
    )


def joined(seconds: float) -> Message:
    return Message(
        {
            "Event": "QueueCallerJoin",
            "Queue": "kcc",
            "Uniqueid": "1.1",
            "Channel": "PJSIP/trunk-00000001",
            "CallerIDNum": "0612345678",
            "Timestamp": at(seconds),
        }
    )


@contextmanager
def statements(services: Services) -> Iterator[list[str]]:
    """The SQL the store was sent meanwhile: by any engine (the call path's writer runs its
    statements through an engine of its own over the same connection)."""
    sent: list[str] = []
    engine = Engine

    def seen(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        sent.append(sql.split()[0].upper())

    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", seen)


async def signed_in(services: Services) -> None:
    async with services.sessions() as session, session.begin():
        session.add(AgentState(extension="2001", queue="kcc", signed_in=True, paused=False))


async def stay(services: Services) -> QueueCall:
    async with services.sessions() as session:
        return (await session.execute(select(QueueCall))).scalar_one()


async def agent(services: Services) -> AgentState:
    async with services.sessions() as session:
        found = await session.get(AgentState, "2001")
        assert found is not None
        return found


def answered_total(services: Services) -> float | None:
    return services.metrics.registry.get_sample_value(
        "bereik_queue_answered_total", {"queue": "kcc"}
    )


async def test_an_answered_caller_is_written_with_the_wait_from_arrival_and_the_agent_busy(
    tmp_path: Path,
) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        await signed_in(services)
        line = QueueEvents(services)
        # The entry handler made the stay at the caller's arrival, in this process.
        await record_arrival(services, "kcc", "1.1", "0612345678", ARRIVED, 1)
        with statements(services) as sent:
            await line.apply(joined(4))
            assert sent == []  # the row is there: nothing to write, nothing to read
            await line.apply(answered(12.5))
            assert "SELECT" not in sent  # the arrival came from memory
        row = await stay(services)
        assert (row.outcome, row.wait_seconds, row.agent) == ("answered", 12.5, "2001")
        assert row.joined_at == ARRIVED
        assert (await agent(services)).on_call_since == ARRIVED + timedelta(seconds=12.5)
        assert answered_total(services) == 1
        await line.apply(completed(60))
        assert (await stay(services)).talk_seconds == 42
        after = await agent(services)
        assert after.on_call_since is None
        assert after.wrapup_until == ARRIVED + timedelta(seconds=65)
        # The same answer again (a replay after a reconnect): neither decided nor counted.
        await line.apply(answered(20))
        assert (await stay(services)).wait_seconds == 12.5
        assert answered_total(services) == 1


async def test_a_stay_made_by_another_process_is_decided_from_its_row(tmp_path: Path) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        await signed_in(services)
        # Another process (or this one before a restart) made the row: its own memory.
        other = Services(
            services.config,
            async_sessionmaker(services.sessions.kw["bind"], expire_on_commit=False),
            services.metrics,
            services.instance_dir,
            services.tts,
        )
        await record_arrival(other, "kcc", "1.1", "0612345678", ARRIVED, 1)
        line = QueueEvents(services)
        with statements(services) as sent:
            await line.apply(joined(4))  # made already: skipped by the insert itself
            assert sent.count("INSERT") == 1
        assert (await stay(services)).joined_at == ARRIVED
        await line.apply(answered(7))
        row = await stay(services)
        assert (row.outcome, row.wait_seconds) == ("answered", 7)
        assert answered_total(services) == 1


async def test_a_caller_the_entry_handler_missed_waits_from_joining(tmp_path: Path) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        line = QueueEvents(services)
        await line.apply(joined(3))
        await line.apply(answered(10))
        row = await stay(services)
        assert (row.outcome, row.wait_seconds, row.caller) == ("answered", 7, "0612345678")


async def test_an_answer_whose_write_failed_leaves_no_trace_and_is_counted_once_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        await signed_in(services)
        line = QueueEvents(services)
        await record_arrival(services, "kcc", "1.1", "0612345678", ARRIVED, 1)
        marked = service.call_marked

        def refused(*args: Any, **kwargs: Any) -> Any:
            raise ValueError("a value the schema refuses")

        monkeypatch.setattr(service, "call_marked", refused)
        with pytest.raises(ValueError):
            await line.apply(answered(5))
        # One transaction: the stay is not decided without the agent's state, nor counted.
        assert (await stay(services)).outcome == ""
        assert answered_total(services) == 0
        monkeypatch.setattr(service, "call_marked", marked)
        await line.apply(answered(5))  # the replay (`bereik events retry`) or a retry
        assert (await stay(services)).wait_seconds == 5
        assert (await agent(services)).on_call_since is not None
        assert answered_total(services) == 1


async def test_the_stays_remembered_stay_bounded_when_decided_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_events, "JOINED_KEPT", 3)
    async with memory_services(CONFIG, tmp_path) as services:
        for n in range(10):
            await record_arrival(services, "kcc", f"1.{n}", "06", ARRIVED, 1)
        assert list(joined_known(services)) == ["1.7", "1.8", "1.9"]


async def test_the_place_in_line_counts_callers_and_callbacks_that_came_earlier(
    tmp_path: Path,
) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        earlier = ARRIVED - timedelta(seconds=30)
        await record_arrival(services, "kcc", "1.1", "06", earlier)
        await record_arrival(services, "kcc", "1.2", "06", ARRIVED + timedelta(seconds=1))
        async with services.sessions() as session, session.begin():
            session.add(
                VirtualHold(
                    queue="kcc",
                    call_uniqueid="0.9",
                    number="0612345678",
                    priority=0,
                    arrived_at=earlier,
                    requested_at=earlier,
                    status="queued",
                    attempts=0,
                    next_at=earlier,
                    agent="",
                )
            )
        assert await service.place_in_line(services, ARRIVED) == 3
