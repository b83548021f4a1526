"""The KCC screen's live call, fed by the call tracker's transitions (one way, no raw events),
and the one transfer function, which audits only what Asterisk accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cti.calls.live import LiveCalls
from cti.calls.tracker import AgentLeg
from cti.calls.transfer import TransferError, transfer_to_team
from cti.store.models import AuditEntry
from dialplan.config import Config
from tests.support.ami_stream import STREAM, replay
from tests.support.memory_services import memory_services


async def test_the_agent_screen_shows_each_recorded_kcc_call_ring_answer_and_end() -> None:
    _, effects = replay(STREAM.read_bytes().decode())
    legs = [e for e in effects if isinstance(e, AgentLeg)]
    board = LiveCalls()
    screen = board.listen("2001")
    seen: list[dict[str, Any]] = []
    for leg in legs:  # a browser that keeps up reads each update as it comes
        board.apply(leg)
        while screen.qsize():
            seen.append(await screen.get())
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


async def test_a_browser_that_falls_behind_still_gets_the_newest_state_of_every_call() -> None:
    board = LiveCalls()
    screen = board.listen("2001")
    for n in range(1000):  # far more updates than any fixed-size buffer would hold
        channel = f"PJSIP/2001-{n:08x}"
        for state in ("ringing", "answered", "ended"):
            board.apply(
                AgentLeg(
                    extension="2001",
                    channel=channel,
                    state=state,
                    call=f"17000.{n}",
                    caller="0612345678",
                    caller_name="",
                    at=0.0,
                    caller_channel="PJSIP/trunk-1",
                )
            )
    assert screen.qsize() == 1000
    finals = [await screen.get() for _ in range(1000)]
    assert [f["linkedid"] for f in finals] == [f"17000.{n}" for n in range(1000)]
    assert {f["state"] for f in finals} == {"ended"}


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
