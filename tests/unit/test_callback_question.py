"""A virtual hold's spoken question, reached by its callback (no hopper): only the agent the
callback rings (while it is at their phone), the KCC's lead and supervisors may hear it,
through the one recordings route, and every play is audited."""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bereik.serve import web_app
from cti.calls.live import LiveCalls
from cti.calls.tracker import AgentLeg
from cti.services import Services
from cti.store.models import AuditEntry, QuestionRecording, User, VirtualHold
from cti.users.service import create_user, issue_token
from dialplan.config import Config
from tests.support.agent_legs import ringing
from tests.support.memory_services import TWO_TEAMS, memory_services

CONFIG = Config.model_validate(TWO_TEAMS)
USERS = [
    ("anna", "agent", "", "2001"),
    ("bert", "agent", "", "2002"),
    ("lea", "lead", "kcc", ""),
    ("sam", "supervisor", "", ""),
    ("marieke", "member", "burgerzaken", "3001"),
]


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with memory_services(CONFIG, tmp_path) as services:
        yield services


def agent_leg(hold_id: int, state: str) -> AgentLeg:
    """The callback's placeholder at agent 2001's phone, as the call tracker reports it."""
    return ringing(f"Local/{hold_id}-402132134-1795978678-0633333333@bereik-vhold-line-0;2", state)


async def test_only_the_agent_the_callback_rings_and_the_kcc_leads_hear_the_question(
    services: Services, tmp_path: Path
) -> None:
    audio = tmp_path / "question.wav"
    with wave.open(str(audio), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 8000)
    now = datetime.now(UTC)
    tokens = {}
    async with services.sessions() as db:
        for name, role, team, extension in USERS:
            await create_user(db, name, "geheim-wachtwoord", role, team, extension)
        hold = VirtualHold(
            call_uniqueid="1795978600.1", number="0633333333", priority=1, arrived_at=now,
            status="queued",
        )  # fmt: skip
        db.add(hold)
        db.add(QuestionRecording(call_uniqueid="1795978600.1", path=str(audio), seconds=1.0))
        await db.commit()
        for name, *_ in USERS:
            user = (await db.execute(select(User).where(User.name == name))).scalar_one()
            tokens[name] = {"Authorization": f"Bearer {await issue_token(db, user)}"}
        await db.commit()
        hold_id = hold.id
    board = LiveCalls()
    board.apply(agent_leg(hold_id, "ringing"))
    async with TestClient(TestServer(web_app(services, board))) as client:

        async def listing(name: str) -> tuple[int, list[dict[str, object]]]:
            response = await client.get(
                f"/api/virtual-holds/{hold_id}/recordings", headers=tokens[name]
            )
            body = await response.json()
            return response.status, body.get("recordings", [])

        status, recordings = await listing("anna")
        assert status == 200 and len(recordings) == 1
        url = str(recordings[0]["url"])
        played = await client.get(url, headers=tokens["anna"])
        assert played.status == 200 and played.content_type == "audio/wav"
        assert await played.read() == audio.read_bytes()
        for name in ("bert", "marieke"):
            assert (await listing(name))[0] == 403
            assert (await client.get(url, headers=tokens[name])).status == 403
        for name in ("lea", "sam"):
            assert (await client.get(url, headers=tokens[name])).status == 200
        # The call at anna's phone is over: the question is no longer hers to hear.
        board.apply(agent_leg(hold_id, "ended"))
        assert (await client.get(url, headers=tokens["anna"])).status == 403
    async with services.sessions() as db:
        plays = (
            await db.execute(
                select(AuditEntry.actor, AuditEntry.detail).where(AuditEntry.action == "play")
            )
        ).all()
    assert [tuple(p) for p in plays] == [
        (n, f"virtual hold {hold_id}") for n in ("anna", "lea", "sam")
    ]
