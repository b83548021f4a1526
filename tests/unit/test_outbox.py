"""The outbox worker: each mail sent once, even with two senders; an outage only delays it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from bench.exchange import free_port
from cti.outbox import backoff, send_due
from cti.services import Services, build_services
from cti.store.models import Base, OutboxMail
from dialplan.config import Config


class Collect:
    def __init__(self) -> None:
        self.subjects: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        text = envelope.content.decode()
        self.subjects += [line[9:] for line in text.splitlines() if line.startswith("Subject: ")]
        return "250 OK"


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def smtp(port: int) -> Iterator[Collect]:
    handler = Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler
    controller.stop()


@pytest.fixture
async def services(tmp_path: Path, port: int) -> AsyncIterator[Services]:
    # A file database, so two "processes" (sessionmakers on two engines) share it.
    url = f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    config = Config.model_validate({"mail": {"smtp_port": port, "retry_seconds": 1}})
    yield build_services(config, async_sessionmaker(engine, expire_on_commit=False), home=tmp_path)
    await engine.dispose()


async def queue(services: Services, count: int) -> None:
    async with services.sessions() as session:
        for n in range(count):
            session.add(
                OutboxMail(key=f"k{n}", recipient="team@example.org", subject=f"m{n}", body="hallo")
            )
        await session.commit()


async def rows(services: Services) -> list[OutboxMail]:
    async with services.sessions() as session:
        return list((await session.execute(select(OutboxMail).order_by(OutboxMail.id))).scalars())


async def test_two_senders_at_once_send_each_mail_once(
    services: Services, smtp: Collect, tmp_path: Path
) -> None:
    await queue(services, 10)
    other_engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    other = dataclasses.replace(
        services, sessions=async_sessionmaker(other_engine, expire_on_commit=False)
    )
    try:
        sent = await asyncio.gather(send_due(services), send_due(other))
    finally:
        await other_engine.dispose()
    assert sum(sent) == 10
    assert sorted(smtp.subjects) == sorted(f"m{n}" for n in range(10))
    assert all(r.sent_at is not None and r.claimed_until is None for r in await rows(services))


async def test_smtp_down_keeps_the_mail_and_backs_off(services: Services, port: int) -> None:
    await queue(services, 1)
    assert await send_due(services) == 0  # nobody listens on the port
    (row,) = await rows(services)
    assert row.sent_at is None and row.attempts == 1 and row.last_error
    assert row.next_attempt_at > datetime.now(UTC)
    assert await send_due(services) == 0  # not due yet: no hammering a dead server
    (row,) = await rows(services)
    assert row.attempts == 1
    # SMTP is back, and the retry is due: sent once.
    handler = Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        later = datetime.now(UTC) + timedelta(seconds=5)
        assert await send_due(services, now=later) == 1
        assert await send_due(services, now=later + timedelta(seconds=60)) == 0
    finally:
        controller.stop()
    assert handler.subjects == ["m0"]


async def test_an_expired_claim_is_taken_over(services: Services, smtp: Collect) -> None:
    await queue(services, 1)
    async with services.sessions() as session:
        row = (await session.execute(select(OutboxMail))).scalar_one()
        row.claimed_until = datetime.now(UTC) + timedelta(seconds=60)  # a sender is busy
        await session.commit()
    assert await send_due(services) == 0
    # That sender died: after its claim runs out another one sends the mail.
    assert await send_due(services, now=datetime.now(UTC) + timedelta(seconds=61)) == 1
    assert smtp.subjects == ["m0"]


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n, 30) for n in (1, 2, 3)] == [30, 60, 120]
    assert backoff(30, 30) == 3600
