"""The virtual-hold events under the store's one fault policy (cti/store/faults.py): one
stage the schema refuses is set aside while the next callback's stage is written, and
`bereik events retry` writes it after the fix; a store that is down is waited out with the
event kept, and the event is written once. (The queue events against real Asterisk:
tests/resilience/test_part_faults.py.)"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from bereik.events import replayers
from cti.queue import vhold
from cti.services import Services
from cti.store import faults
from cti.store.models import VirtualHold
from tests.support.memory_services import CONFIG, memory_services


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "BACKOFF_MIN", 0.01)


def queued(row_id: int, number: str) -> VirtualHold:
    now = datetime.now(UTC)
    return VirtualHold(
        id=row_id,
        call_uniqueid=f"call-{row_id}",
        number=number,
        priority=10,
        arrived_at=now,
        status="queued",
    )


def made(row_id: int) -> dict[str, Any]:
    """The dialplan's stage event: an agent took the placeholder of callback `row_id`."""
    return {"Event": "UserEvent", "UserEvent": "BereikVirtualHold", "Id": str(row_id),
            "Stage": "made", "Agent": "2001"}  # fmt: skip


async def statuses(services: Services) -> dict[int, str]:
    async with services.sessions() as session:
        found = await session.execute(select(VirtualHold.id, VirtualHold.status))
        return {row_id: status for row_id, status in found.all()}


class Moves:
    """The worker's writes of a callback's state, watched: the first `down` fail as a
    store that is down would; `written` is set once callback `row_id` has moved."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, row_id: int, down: int = 0) -> None:
        self.row_id, self.down = row_id, down
        self.tries = 0
        self.written = asyncio.Event()
        self._move = vhold._move
        monkeypatch.setattr(vhold, "_move", self.move)

    async def move(self, services: Services, row: int, *args: Any, **kwargs: Any) -> bool:
        self.tries += 1
        if self.tries <= self.down:
            raise OperationalError("UPDATE", {}, Exception("database is locked"))
        ok: bool = await self._move(services, row, *args, **kwargs)
        if ok and row == self.row_id:
            self.written.set()
        return ok


async def test_a_refused_virtual_hold_stage_is_set_aside_and_the_next_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moves = Moves(monkeypatch, 2)
    async with memory_services(CONFIG, tmp_path) as services:
        async with services.sessions() as session, session.begin():
            session.add_all([queued(1, "0611111111"), queued(2, "0622222222")])
            # A row the schema refuses, from outside the code: callback 1 taken by an agent.
            await session.execute(
                text(
                    "CREATE TRIGGER refuse_one BEFORE UPDATE ON virtual_holds "
                    "WHEN NEW.id = 1 AND NEW.status = 'calling' "
                    "BEGIN SELECT RAISE(ABORT, 'stage refused'); END"
                )
            )
        events = vhold.VirtualHoldEvents(services)
        worker = asyncio.create_task(events.run())
        try:
            events.on_event(made(1))  # type: ignore[arg-type]
            events.on_event(made(2))  # type: ignore[arg-type]
            await asyncio.wait_for(moves.written.wait(), 5)
        finally:
            worker.cancel()
        assert (await statuses(services))[1] == "queued"
        aside = await faults.listing(services.sessions)
        assert [(row.source, row.payload["Id"]) for row in aside] == [(vhold.SOURCE, "1")]
        assert "stage refused" in aside[0].error
        counted = services.metrics.registry.get_sample_value(
            "bereik_set_aside_total", {"source": vhold.SOURCE}
        )
        assert counted == 1

        async with services.sessions() as session, session.begin():
            await session.execute(text("DROP TRIGGER refuse_one"))
        results = await faults.replay(services.sessions, replayers(services))
        assert [(r.source, r.ok) for r in results] == [(vhold.SOURCE, True)]
        assert await statuses(services) == {1: "calling", 2: "calling"}


async def test_a_virtual_hold_stage_waits_out_a_store_that_is_down_and_is_written_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moves = Moves(monkeypatch, 1, down=2)
    async with memory_services(CONFIG, tmp_path) as services:
        async with services.sessions() as session, session.begin():
            session.add(queued(1, "0611111111"))
        events = vhold.VirtualHoldEvents(services)
        worker = asyncio.create_task(events.run())
        try:
            events.on_event(made(1))  # type: ignore[arg-type]
            await asyncio.wait_for(moves.written.wait(), 5)
            await asyncio.sleep(0.05)  # a second write would come within the backoff
        finally:
            worker.cancel()
        assert moves.tries == 3  # two refusals of a store that was down, then once
        assert await statuses(services) == {1: "calling"}
        assert await faults.listing(services.sessions) == []
        made_total = services.metrics.registry.get_sample_value(
            "bereik_queue_virtual_hold_total", {"queue": "kcc", "stage": "made"}
        )
    assert made_total == 1


async def test_a_virtual_holds_later_stage_follows_its_refused_one_aside_and_is_replayed_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moves = Moves(monkeypatch, 2)
    async with memory_services(CONFIG, tmp_path) as services:
        async with services.sessions() as session, session.begin():
            session.add_all([queued(1, "0611111111"), queued(2, "0622222222")])
            await session.execute(
                text(
                    "CREATE TRIGGER refuse_one BEFORE UPDATE ON virtual_holds "
                    "WHEN NEW.id = 1 AND NEW.status = 'calling' "
                    "BEGIN SELECT RAISE(ABORT, 'stage refused'); END"
                )
            )
        events = vhold.VirtualHoldEvents(services)
        worker = asyncio.create_task(events.run())
        try:
            events.on_event(made(1))  # type: ignore[arg-type]
            # The citizen of callback 1 answers: applied alone it would find the row still
            # queued and do nothing, and the answer would be lost.
            events.on_event({**made(1), "Stage": "ANSWER"})  # type: ignore[arg-type]
            events.on_event(made(2))  # type: ignore[arg-type]
            await asyncio.wait_for(moves.written.wait(), 5)
        finally:
            worker.cancel()
        aside = await faults.listing(services.sessions)
        assert [(row.payload["Id"], row.payload["Stage"]) for row in aside] == [
            ("1", "made"),
            ("1", "ANSWER"),
        ]
        async with services.sessions() as session, session.begin():
            await session.execute(text("DROP TRIGGER refuse_one"))
        results = await faults.replay(services.sessions, replayers(services))
        assert [r.ok for r in results] == [True, True]
        assert await statuses(services) == {1: "reached", 2: "calling"}
