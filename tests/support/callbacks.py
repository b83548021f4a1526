"""The callback tests' exchange: two teams, fast callback timers, a hopper to call back."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.exchange import Exchange
from cti.store.db import create_engine, sessions
from cti.store.models import Hopper
from cti.users.service import create_user, issue_token

TEAMS = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "3000"
members = ["3001"]
mailbox = "vergunningen@gemeente.test"

[[teams]]
id = "parkeren"
name = "Parkeren"
number = "3100"
members = []
mailbox = "parkeren@gemeente.test"
"""


CALLBACKS = """
[callbacks]
member_ring_seconds = 10
ring_seconds = 5
check_seconds = 1
"""


async def seed(ex: Exchange, caller: str = "0612345678") -> tuple[int, str, str]:
    """An open hopper for Vergunningen, its member Piet (ext 3001) and a Parkeren member."""
    engine = create_engine(ex.database_url)
    try:
        async with sessions(engine)() as session, session.begin():
            now = datetime.now(UTC)
            hopper = Hopper(
                team_id="vergunningen",
                caller=caller,
                reason="no_answer",
                created_at=now - timedelta(hours=1),
                deadline=now + timedelta(days=2),
                status="open",
                counts_for_norm=True,
                repeat_count=0,
            )
            session.add(hopper)
            piet = await create_user(
                session,
                "piet",
                "geheim-wachtwoord-1",
                "member",
                team_id="vergunningen",
                extension="3001",
            )
            other = await create_user(
                session, "karin", "geheim-wachtwoord-2", "member", team_id="parkeren"
            )
            await session.flush()
            return hopper.id, await issue_token(session, piet), await issue_token(session, other)
    finally:
        await engine.dispose()


async def outcome(ex: Exchange, attempt_id: int, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = ex.rows("SELECT * FROM callback_attempts WHERE id = :id", id=attempt_id)
        if rows and rows[0].outcome != "pending":
            return rows[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"attempt {attempt_id} still pending after {timeout} s")
