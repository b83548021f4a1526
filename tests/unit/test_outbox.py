"""The outbox worker: each mail sent once, even with two senders; an outage only delays it."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from bench.exchange import free_port
from cti.outbox import CLAIM_SECONDS, backoff, send_due
from cti.services import Services, build_services
from cti.store.db import create_engine, sessions
from cti.store.models import OutboxMail
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
async def services(store_url: str, tmp_path: Path, port: int) -> AsyncIterator[Services]:
    # A file or server database, so two "processes" (two engines) share it.
    engine = create_engine(store_url)
    config = Config.model_validate(
        {"database": {"url": store_url}, "mail": {"smtp_port": port, "retry_seconds": 1}}
    )
    yield build_services(config, sessions(engine), home=tmp_path)
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
    other_engine = create_engine(services.config.database.url)
    other = dataclasses.replace(services, sessions=sessions(other_engine))
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


class KillAfter(Collect):
    """Takes `count` mails, then "kills" the sender: cancels its task mid-round, as
    kill -9 would stop it, and refuses whatever still reaches the server."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.victim: asyncio.Task[int] | None = None
        self.loop = asyncio.get_running_loop()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        victim = self.victim
        if len(self.subjects) >= self.count and victim is not None:
            dead = threading.Event()
            self.loop.call_soon_threadsafe(victim.add_done_callback, lambda _: dead.set())
            self.loop.call_soon_threadsafe(victim.cancel)
            # The reply not together with the cancellation, which it can swallow
            # (asyncio.wait_for in Python 3.11, which aiosmtplib's reads use: the "killed"
            # sender went on sending): once the sender is dead, or half a second on (its
            # read of this reply may hold the cancellation until the reply comes).
            await asyncio.to_thread(dead.wait, 0.5)
            return "451 going away"
        return await super().handle_DATA(server, session, envelope)


async def test_a_sender_killed_mid_round_sends_no_mail_twice(services: Services, port: int) -> None:
    await queue(services, 10)
    killer = KillAfter(3)
    controller = Controller(killer, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        killer.victim = asyncio.create_task(send_due(services))
        with pytest.raises(asyncio.CancelledError):
            await killer.victim
        assert killer.subjects == ["m0", "m1", "m2"]
        # What the server took is on record as sent, at once, not at the end of the round.
        assert sorted(r.subject for r in await rows(services) if r.sent_at) == ["m0", "m1", "m2"]
        # Another sender, once the dead one's claim ran out, sends only the rest.
        killer.victim = None
        later = datetime.now(UTC) + timedelta(seconds=CLAIM_SECONDS + 1)
        assert await send_due(services, now=later) == 7
    finally:
        controller.stop()
    assert sorted(killer.subjects) == sorted(f"m{n}" for n in range(10))


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n, 30) for n in (1, 2, 3)] == [30, 60, 120]
    assert backoff(30, 30) == 3600
