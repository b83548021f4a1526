"""The KCC screen's live call, fed by the call tracker's transitions (one way, no raw events),
and the one transfer function, which audits only what Asterisk accepted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cti.calls.live import LiveCalls
from cti.calls.tracker import AgentLeg
from cti.calls.transfer import TransferError, transfer_to_team
from cti.store.models import AuditEntry
from dialplan.config import Config
from tests.unit.memory_services import memory_services
from tests.unit.test_call_tracker import STREAM, replay


def test_the_agent_screen_shows_each_recorded_kcc_call_ring_answer_and_end() -> None:
    _, effects = replay(STREAM.read_bytes().decode())
    legs = [e for e in effects if isinstance(e, AgentLeg)]
    board = LiveCalls()
    screen: asyncio.Queue[dict[str, Any]] = board.listen("2001")
    for leg in legs:
        board.apply(leg)
    seen: list[dict[str, Any]] = []
    while not screen.empty():
        seen.append(screen.get_nowait())
    # The recording holds four KCC calls answered at 2001 and one the caller gave up on
    # while 2001 rang. The second call rang at 2001 while the first was still on: the
    # screen shows the newest call, so the first one's end is not shown over it.
    calls: dict[str, list[str]] = {}
    for update in seen:
        calls.setdefault(update["linkedid"], []).append(update["state"])
    assert list(calls.values()) == [
        ["ringing", "answered"],
        ["ringing", "answered", "ended"],
        ["ringing", "ended"],
        ["ringing", "answered", "ended"],
        ["ringing", "answered", "ended"],
    ]
    assert {update["caller"] for update in seen} >= {"0612345678", "0702222222"}
    assert board.calls == {}


async def test_a_transfer_with_asterisk_unreachable_is_refused_and_not_audited(
    tmp_path: Path,
) -> None:
    config = Config.model_validate(
        {
            "teams": [
                {
                    "id": "vergunningen",
                    "name": "Vergunningen",
                    "number": "7001",
                    "mailbox": "verg@example.org",
                }
            ]
        }
    )
    async with memory_services(config, tmp_path) as services:
        with pytest.raises(TransferError) as refused:
            await transfer_to_team(services, "1.0", config.teams[0], actor="anna", agent="2001")
        assert refused.value.status == 503
        async with services.sessions() as session:
            rows = (await session.execute(select(AuditEntry))).scalars().all()
        assert rows == []
