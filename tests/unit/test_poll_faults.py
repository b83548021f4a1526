"""The polling workers under the store's one fault policy (cti/store/faults.py): a store
that is down is waited out and the pass done after; a refusal of one callback for a caller
who gave up sets that one aside (once, not on every pass) while the others are made, and
`bereik events retry` makes it after the fix; any other fault goes up to the supervisor.
A push to Asterisk on taking the call tracking lease waits out a store that is down too."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from bereik.events import replayers
from cti.calls.lease import TrackingLease
from cti.queue import abandoned
from cti.reports import firstline
from cti.services import Services
from cti.store import faults
from cti.store.models import Hopper, QueueCall, SetAside
from cti.supervisor import Supervisor
from tests.support.memory_services import CONFIG, memory_services

REFUSED = "0612345666"


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "BACKOFF_MIN", 0.01)


def stay(uniqueid: str, caller: str, minutes: int) -> QueueCall:
    joined = datetime.now(UTC) - timedelta(minutes=minutes)
    return QueueCall(
        queue="kcc",
        uniqueid=uniqueid,
        caller=caller,
        joined_at=joined,
        left_at=joined + timedelta(seconds=40),
        outcome="abandoned",
        wait_seconds=40.0,
    )


async def sql(services: Services, statement: str) -> None:
    async with services.sessions() as session, session.begin():
        await session.execute(text(statement))


async def abandoned_hoppers(services: Services) -> list[str]:
    async with services.sessions() as session:
        found = await session.execute(
            select(Hopper.caller).where(Hopper.reason == "abandoned").order_by(Hopper.id)
        )
        return list(found.scalars())


async def test_a_refused_callback_is_set_aside_once_and_the_others_are_made(
    tmp_path: Path,
) -> None:
    config = CONFIG.model_copy(
        update={"queue": CONFIG.queue.model_copy(update={"callback_abandoned": True})}
    )
    async with memory_services(config, tmp_path) as services:
        async with services.sessions() as session, session.begin():
            session.add_all(
                [stay("a", "0611111111", 9), stay("b", REFUSED, 8), stay("c", "0633333333", 7)]
            )
        # A row the schema refuses, from outside the code: this caller's hopper.
        await sql(
            services,
            "CREATE TRIGGER refuse_hopper BEFORE INSERT ON hoppers "
            f"WHEN NEW.caller = '{REFUSED}' BEGIN SELECT RAISE(ABORT, 'caller refused'); END",
        )
        made = await abandoned.call_back(services)
        assert len(made) == 2
        assert await abandoned_hoppers(services) == ["0611111111", "0633333333"]
        # The next pass (or a restarted worker) does not set it aside a second time.
        assert await abandoned.call_back(services) == []
        aside = await faults.listing(services.sessions)
        assert [(row.source, row.payload["uniqueid"]) for row in aside] == [(abandoned.SOURCE, "b")]
        assert "caller refused" in aside[0].error
        counted = services.metrics.registry.get_sample_value(
            "bereik_set_aside_total", {"source": abandoned.SOURCE}
        )
        assert counted == 1

        await sql(services, "DROP TRIGGER refuse_hopper")
        results = await faults.replay(services.sessions, replayers(services))
        assert [(r.source, r.ok) for r in results] == [(abandoned.SOURCE, True)]
        assert await abandoned_hoppers(services) == ["0611111111", "0633333333", REFUSED]
        # Replayed once: a second retry has nothing left, and makes no second hopper.
        assert await faults.replay(services.sessions, replayers(services)) == []
        async with services.sessions() as session:
            kept = (await session.execute(select(SetAside.replayed_at))).scalars().all()
        assert len(kept) == 1 and kept[0] is not None


async def test_the_first_line_figures_wait_out_a_store_that_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[str] = []
    done = asyncio.Event()

    async def refresh(services: Services) -> None:
        if len(passes) < 2:
            passes.append("down")
            raise OperationalError("SELECT", {}, Exception("database is locked"))
        passes.append("done")
        done.set()

    monkeypatch.setattr(firstline, "refresh", refresh)
    async with memory_services(CONFIG, tmp_path) as services:
        worker = asyncio.create_task(firstline.run(services, interval=60))
        await asyncio.wait_for(done.wait(), 5)
        assert not worker.done()  # waited out, not crashed
        worker.cancel()
    assert passes == ["down", "down", "done"]


async def test_a_fault_of_a_polling_worker_shows_it_down_and_it_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = CONFIG.model_copy(
        update={"queue": CONFIG.queue.model_copy(update={"callback_abandoned": True})}
    )
    passes: list[int] = []
    again = asyncio.Event()

    async def call_back(services: Services) -> list[int]:
        passes.append(1)
        if len(passes) == 1:
            raise RuntimeError("a fault of ours")
        again.set()
        return []

    monkeypatch.setattr(abandoned, "call_back", call_back)
    async with memory_services(config, tmp_path) as services:
        parts = Supervisor(services.metrics, backoff_min=0.05, backoff_max=0.1)
        parts.add("callers who gave up", lambda: abandoned.run(services, interval=60))
        parts.start()
        try:
            await asyncio.wait_for(again.wait(), 5)
        finally:
            await parts.stop()
        part = parts.parts["callers who gave up"]
    assert part.restarts == 1 and part.last_error == "RuntimeError: a fault of ours"
    restarted = services.metrics.registry.get_sample_value(
        "bereik_worker_restarts_total", {"worker": "callers who gave up"}
    )
    assert restarted == 1


async def test_a_push_on_taking_the_lease_waits_out_a_store_that_is_down_while_owner() -> None:
    lease = TrackingLease.sole()
    pushes: list[str] = []

    async def push() -> None:
        pushes.append("try")
        if len(pushes) <= 2:
            raise OperationalError("SELECT", {}, Exception("database is locked"))

    await lease._logged("queue members", push)
    assert pushes == ["try", "try", "try"]

    # Lost meanwhile: the next owner pushes; this one no longer does.
    lease.owned.clear()
    await lease._logged("queue members", push)
    assert len(pushes) == 3
