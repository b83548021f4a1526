"""A caller at the waiting line's entry: the agents' states, the rules that need the
database, the place in line and the stay's row, in one job of the call path's writer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from cti.queue import service
from cti.queue.events import LINE_FULL, NOBODY_PRESENT, arrive, joined_known, line_now
from cti.store.models import AgentState, QueueCall
from dialplan.config import Config
from tests.support.memory_services import memory_services

ARRIVED = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def config(max_waiting: int = 0) -> Config:
    return Config.model_validate(
        {
            "kcc": {"agents": ["2001", "2002"], "mode": "queue"},
            "phones": [{"extension": "2001", "name": "Anna"}, {"extension": "2002"}],
            "queue": {"max_waiting": max_waiting},
        }
    )


async def stays(services: service.Services) -> list[tuple[str, int, datetime]]:
    async with services.sessions() as session:
        rows = await session.execute(
            select(QueueCall.uniqueid, QueueCall.position, QueueCall.joined_at).order_by(
                QueueCall.joined_at
            )
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_callers_get_their_place_in_order_of_arrival_and_a_stay_with_it(
    tmp_path: Path,
) -> None:
    cfg = config()
    async with memory_services(cfg, tmp_path) as services:
        async with services.sessions() as session, session.begin():
            session.add(AgentState(extension="2001", queue="kcc", signed_in=True, paused=False))
        line = service.line_named(cfg, "kcc")
        first = await arrive(services, line, "1.1", "0612345678", ARRIVED)
        second = await arrive(services, line, "1.2", "0687654321", ARRIVED + timedelta(seconds=1))
        assert (first.refused, first.position) == ("", 1)
        assert (second.refused, second.position) == ("", 2)
        assert [(v.extension, v.name, v.state) for v in first.views] == [
            ("2001", "Anna", "available"),
            ("2002", "", "signed_out"),
        ]
        assert await stays(services) == [
            ("1.1", 1, ARRIVED),
            ("1.2", 2, ARRIVED + timedelta(seconds=1)),
        ]
        # Remembered: the QueueCallerJoin and the decision need no read.
        assert set(joined_known(services)) == {"1.1", "1.2"}
        # Asked again after the entry messages: the same count from the database.
        position, views = await line_now(services, line, ARRIVED + timedelta(seconds=1))
        assert position == 2
        assert [v.state for v in views] == ["available", "signed_out"]
        assert position == await service.place_in_line(services, ARRIVED + timedelta(seconds=1))


async def test_nobody_signed_in_turns_the_caller_away_without_a_stay(tmp_path: Path) -> None:
    cfg = config()
    async with memory_services(cfg, tmp_path) as services:
        entry = await arrive(services, service.line_named(cfg, "kcc"), "1.1", "06", ARRIVED)
        assert (entry.refused, entry.position) == (NOBODY_PRESENT, 0)
        assert await stays(services) == []
        assert "1.1" not in joined_known(services)


async def test_a_full_line_turns_the_next_caller_away(tmp_path: Path) -> None:
    cfg = config(max_waiting=1)
    async with memory_services(cfg, tmp_path) as services:
        async with services.sessions() as session, session.begin():
            session.add(AgentState(extension="2002", queue="kcc", signed_in=True, paused=True))
        line = service.line_named(cfg, "kcc")
        assert (await arrive(services, line, "1.1", "06", ARRIVED)).refused == ""
        full = await arrive(services, line, "1.2", "06", ARRIVED + timedelta(seconds=1))
        assert (full.refused, full.position) == (LINE_FULL, 0)
        assert [uniqueid for uniqueid, _, _ in await stays(services)] == ["1.1"]
