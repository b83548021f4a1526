"""The call tracking lease on PostgreSQL: one owner, a standby that takes over when the
owner's beat stands still, and an old owner whose writes are refused afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from panoramisk.message import Message
from sqlalchemy import select

from bench.ami_ingest import CONFIG
from cti.calls import lease as lease_module
from cti.calls.lease import LeaseLost, TrackingLease
from cti.calls.listener import RESYNC_EVENT, CallListener
from cti.services import Services
from cti.store.db import Sessions, create_engine, migrate_async, sessions
from cti.store.models import Call
from cti.tts import engine_for
from dialplan.config import Config
from metrics.registry import BereikMetrics
from tests.postgres import PostgresCluster
from tests.support.ami_stream import STREAM, blocks

NAME = "ami:127.0.0.1:5038"


@pytest.fixture(autouse=True)
def quick_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same rules at a tenth of the pace: a test of seconds, not of half a minute.
    monkeypatch.setattr(lease_module, "BEAT_SECONDS", 0.1)
    monkeypatch.setattr(lease_module, "EXPIRE_SECONDS", 0.5)


@pytest.fixture
async def stores(postgres: PostgresCluster) -> AsyncIterator[tuple[Sessions, Sessions]]:
    """Two processes' connections to one PostgreSQL database."""
    url = postgres.new_database()
    await migrate_async(url)
    engines = [create_engine(url), create_engine(url)]
    yield sessions(engines[0]), sessions(engines[1])
    for engine in engines:
        await engine.dispose()


async def owned_within(lease: TrackingLease, seconds: float) -> bool:
    try:
        await asyncio.wait_for(lease.owned.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def owner_and_standby(
    stores: tuple[Sessions, Sessions],
) -> tuple[TrackingLease, TrackingLease, list[asyncio.Task[None]]]:
    """Process a takes the lease first; then process b watches it."""
    first = TrackingLease(stores[0], NAME, holder="a")
    second = TrackingLease(stores[1], NAME, holder="b")
    running = [asyncio.create_task(first.run())]
    assert await owned_within(first, 2)
    running.append(asyncio.create_task(second.run()))
    return first, second, running


async def test_standby_takes_over_only_when_the_owner_stops_and_the_old_owner_cannot_write(
    stores: tuple[Sessions, Sessions],
) -> None:
    first, second, running = await owner_and_standby(stores)
    try:
        # Six expiry times while the owner beats: the standby stays a standby.
        assert not await owned_within(second, 6 * lease_module.EXPIRE_SECONDS)
        running[0].cancel()  # the owner stops beating (as in a kill -9)
        assert await owned_within(second, 4 * lease_module.EXPIRE_SECONDS)
        assert second.fence == (first.fence or 0) + 1
        async with stores[0]() as session:
            with pytest.raises(LeaseLost):
                await session.run_sync(lambda s: first.fenced(s.connection(), 0.0))
        async with stores[1]() as session:
            # The new owner writes.
            await session.run_sync(lambda s: second.fenced(s.connection(), 0.0))
    finally:
        for task in running:
            task.cancel()


async def test_a_released_lease_is_taken_at_the_standbys_next_look(
    stores: tuple[Sessions, Sessions],
) -> None:
    first, second, running = await owner_and_standby(stores)
    try:
        running[0].cancel()
        await first.release()
        # Well before the beat could be seen standing still.
        assert await owned_within(second, lease_module.EXPIRE_SECONDS / 2)
    finally:
        for task in running:
            task.cancel()


def listener_on(store: Sessions, holder: str, tmp_path: Path) -> CallListener:
    config = Config.model_validate(CONFIG)
    services = Services(
        config=config,
        sessions=store,
        metrics=BereikMetrics(teams=["vergunningen"]),
        instance_dir=tmp_path,
        tts=engine_for(config.tts),
    )
    return CallListener(services, TrackingLease(store, NAME, holder=holder))


def offered(listener: CallListener) -> float:
    registry = listener.services.metrics.registry
    return sum(
        registry.get_sample_value("bereik_calls_offered_total", {"entry": e}) or 0
        for e in ("14070", "team", "internal")
    )


async def test_standby_writes_the_calls_the_killed_owner_left_and_counts_each_once(
    stores: tuple[Sessions, Sessions], tmp_path: Path
) -> None:
    owner = listener_on(stores[0], "a", tmp_path)
    standby = listener_on(stores[1], "b", tmp_path)
    messages: list[Message] = []
    for item in blocks(STREAM.read_bytes().decode()):
        if isinstance(item, str):  # a new AMI connection: resync (Asterisk restarted)
            marker = Message({"Event": RESYNC_EVENT})
            marker.channels = []
            item = marker
        messages.append(item)
    half = len(messages) // 2
    owner_tasks = [asyncio.create_task(owner.lease.run())]
    assert await owned_within(owner.lease, 2)
    owner_tasks.append(asyncio.create_task(owner.run()))
    standby_tasks = [
        asyncio.create_task(standby.lease.run()),
        asyncio.create_task(standby.run()),
    ]
    try:
        # Both processes follow the same AMI stream; the owner writes the first half.
        for message in messages[:half]:
            owner.on_event(message)
            standby.on_event(message)
        first_half = len(owner.pending)
        while owner.written < first_half:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        written_by_owner = offered(owner)
        for task in owner_tasks:  # kill -9: the rest of its events are never written
            task.cancel()
        for message in messages[half:]:
            owner.on_event(message)
            standby.on_event(message)
        assert owner.pending, "the killed owner had events it never wrote"
        kept = len(standby.pending)
        assert await owned_within(standby.lease, 4 * lease_module.EXPIRE_SECONDS)
        while standby.written < kept:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        async with stores[1]() as session:
            rows = (await session.execute(select(Call.uniqueid, Call.outcome))).all()
    finally:
        for task in owner_tasks + standby_tasks:
            task.cancel()
    assert len(rows) == 6
    assert all(row.outcome for row in rows)
    assert written_by_owner + offered(standby) == 6, "each call counted once, by one process"
