"""The virtual holds' worker: a callback this process asked for is placed at once, one sent
back to wait is placed when its time comes, and with none due the table is not read every
second."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from cti.queue import vhold
from cti.services import Services
from cti.store.models import VirtualHold
from dialplan.config import Config
from tests.support.memory_services import memory_services

CONFIG = Config.model_validate(
    {
        "kcc": {"agents": ["2001"], "mode": "queue"},
        "phones": [{"extension": "2001"}],
        "queue": {"virtual_hold": True},
    }
)


class RecordingAmi:
    """Stands in for the AMI client: keeps the Originates it is given."""

    connected = True

    def __init__(self) -> None:
        self.actions: list[dict[str, Any]] = []

    async def action(self, action: dict[str, Any], timeout: float = 5.0) -> dict[str, str]:
        self.actions.append(action)
        return {"Response": "Success"}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Services, RecordingAmi, list[float]]]:
    """Services with a connected AMI, the worker running, and the moments (monotonic) it
    read the virtual holds."""
    async with memory_services(CONFIG, tmp_path) as services:
        ami = RecordingAmi()
        with_ami = dataclasses.replace(services, ami=ami)  # type: ignore[arg-type]
        reads: list[float] = []

        def seen(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
            if sql.lstrip().upper().startswith("SELECT") and "FROM virtual_holds" in sql:
                reads.append(time.monotonic())  # on the driver's thread: no loop there

        engine = Engine  # every engine: the store's, and the call path's writer's
        event.listen(engine, "before_cursor_execute", seen)
        worker = asyncio.create_task(vhold.place_worker(with_ami))
        try:
            yield with_ami, ami, reads
            assert not worker.done(), worker.exception()  # it runs until stopped
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            event.remove(engine, "before_cursor_execute", seen)


async def placed(ami: RecordingAmi, count: int, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while len(ami.actions) < count:
        assert loop.time() < deadline, f"{len(ami.actions)} placed, {count} expected"
        await asyncio.sleep(0.01)


async def test_a_requested_callback_is_placed_at_once_and_an_idle_table_read_seldom(
    served: tuple[Services, RecordingAmi, list[float]],
) -> None:
    services, ami, reads = served
    await asyncio.sleep(0.2)  # the worker's first look: nothing there
    before = len(reads)
    assert await vhold.request(services, "1.1", "0612345678", 10, datetime.now(UTC))
    await placed(ami, 1, within=0.5)  # well before the idle pace
    assert ami.actions[0]["Exten"] == "0612345678"
    # Placed and waiting in the line: nothing due, so no read every second.
    after = len(reads)
    await asyncio.sleep(1.5)
    assert after > before
    assert len(reads) == after


async def test_a_callback_sent_back_to_wait_is_placed_when_its_time_comes(
    served: tuple[Services, RecordingAmi, list[float]],
) -> None:
    services, ami, _ = served
    # After the worker's first look (the test store is one connection, shared: a read
    # alongside the insert's transaction would see it undone).
    await asyncio.sleep(0.2)
    soon = datetime.now(UTC) + timedelta(seconds=0.6)
    async with services.sessions() as session, session.begin():
        session.add(
            VirtualHold(
                queue="kcc",
                call_uniqueid="1.1",
                number="0612345678",
                priority=10,
                arrived_at=soon,
                requested_at=soon,
                status="pending",
                attempts=1,
                next_at=soon,
                agent="",
            )
        )
    vhold.wake(services)  # as the events' worker does when a try did not reach the citizen
    await asyncio.sleep(0.3)
    assert ami.actions == []  # not due yet
    await placed(ami, 1, within=1.0)
    async with services.sessions() as session:
        assert await session.scalar(select(VirtualHold.status)) == "queued"
