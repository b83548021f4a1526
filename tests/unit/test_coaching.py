"""Coaching's rules without Asterisk: who may listen in on whose call, which node the spy is
originated on, what a refusal answers, and the audit rows read from the spy's events."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from panoramisk.message import Message
from sqlalchemy import select

from cti.ami.client import AmiClient
from cti.ami.nodes import AmiNodes
from cti.calls.live import AgentCall, LiveCalls
from cti.coaching import service
from cti.errors import Conflict, Forbidden, Invalid, NotFound
from cti.store.models import AuditEntry, Call, User
from dialplan.config import Config
from tests.support.ami_calls import event
from tests.support.memory_services import memory_services

CONFIG = Config.model_validate(
    {
        "kcc": {"agents": ["2001"]},
        "phones": [{"extension": e} for e in ("2001", "3001", "2050", "3099")],
        "teams": [
            {
                "id": "vergunningen",
                "name": "Vergunningen",
                "number": "7001",
                "members": ["3001"],
                "mailbox": "v@example.org",
            }
        ],
    }
)


def user(name: str, role: str, team: str = "", extension: str = "") -> User:
    return User(name=name, role=role, team_id=team, extension=extension, password_hash="")


def test_a_supervisor_joins_every_agent_a_lead_only_their_own_teams_agents() -> None:
    assert service.agent_team(CONFIG, "2001") == "kcc"
    assert service.agent_team(CONFIG, "3001") == "vergunningen"
    assert service.agent_team(CONFIG, "2050") == ""
    supervisor = user("sofie", "supervisor")
    assert service.may_coach(supervisor, "kcc") and service.may_coach(supervisor, "vergunningen")
    lead = user("lars", "lead", "vergunningen")
    assert service.may_coach(lead, "vergunningen")
    assert not service.may_coach(lead, "kcc")
    assert not service.may_coach(user("kim", "lead"), "")  # a lead of no team leads nobody
    for role in ("member", "agent", "operator"):
        assert not service.may_coach(user("x", role, "vergunningen"), "vergunningen")


class FakeClient:
    """An AMI connection that answers CoreShowChannels with its node's channels and keeps
    the actions it was sent."""

    def __init__(self, node: str, channels: list[str]) -> None:
        self.node = node
        self.connected = True
        self.channels = channels
        self.sent: list[dict[str, str]] = []
        self.events: Any = None
        self.on_connected: list[Any] = []
        self.on_state: list[Any] = []
        self.on_dropped: list[Any] = []
        self.on_skipped: list[Any] = []

    async def action(self, action: dict[str, str], timeout: float | None = None) -> Message:
        self.sent.append(action)
        return Message({"Response": "Success"})

    async def action_list(
        self, action: dict[str, str], timeout: float | None = None
    ) -> list[Message]:
        return [
            Message(
                {
                    "Event": "CoreShowChannel",
                    "Channel": name,
                    "Uniqueid": f"{self.node}-17000.{i}",
                }
            )
            for i, name in enumerate(self.channels)
        ]


def answered_call(board: LiveCalls, extension: str, channel: str, linkedid: str) -> None:
    board.calls[extension] = AgentCall(
        extension=extension,
        channel=channel,
        caller="0612345678",
        caller_name="",
        linkedid=linkedid,
        state="answered",
    )


async def with_call(services: Any, uniqueid: str) -> int:
    async with services.sessions() as session:
        row = Call(uniqueid=uniqueid, linkedid=uniqueid, entry="14070", caller="0612345678")
        session.add(row)
        await session.commit()
        return cast(int, row.id)


async def test_on_two_nodes_the_spy_rings_the_coach_on_the_node_with_the_agents_channel(
    tmp_path: Path,
) -> None:
    one = FakeClient("node1", ["PJSIP/trunk-00000001"])
    two = FakeClient("node2", ["PJSIP/trunk-00000004", "PJSIP/2001-00000005"])
    nodes = AmiNodes(cast(dict[str, AmiClient], {"node1": one, "node2": two}))
    board = LiveCalls()
    answered_call(board, "2001", "PJSIP/2001-00000005", "node2-17000.0")
    async with memory_services(CONFIG, tmp_path) as services:
        services.ami = nodes
        call_id = await with_call(services, "node2-17000.0")
        session = await service.start(
            services, board, str(call_id), "whisper", user("sofie", "supervisor", "", "2050")
        )
        assert one.sent == []
        [originate] = two.sent
        assert originate["Channel"] == "PJSIP/2050"
        assert originate["Context"] == "coaching" and originate["Exten"] == "whisper"
        assert originate["Variable"] == "BEREIK_COACH_SPY=PJSIP/2001-00000005"
        assert originate["ChannelId"] == f"coach-{session.id}"
        async with services.sessions() as db:
            rows = (await db.execute(select(AuditEntry))).scalars().all()
        assert [(r.actor, r.action, r.object_id) for r in rows] == [("sofie", "coach", session.id)]


async def test_refusals_unknown_call_no_agent_other_team_bad_mode(tmp_path: Path) -> None:
    client = FakeClient("", ["PJSIP/2001-00000002"])
    board = LiveCalls()
    async with memory_services(CONFIG, tmp_path) as services:
        services.ami = cast(AmiClient, client)
        call_id = await with_call(services, "17000.0")
        lead = user("lars", "lead", "vergunningen", "3099")
        with pytest.raises(NotFound):
            await service.start(services, board, "987654", "listen", lead)
        with pytest.raises(Conflict):  # nobody answered it (yet)
            await service.start(services, board, str(call_id), "listen", lead)
        answered_call(board, "2001", "PJSIP/2001-00000002", "17000.0")
        with pytest.raises(Forbidden):
            await service.start(services, board, str(call_id), "listen", lead)
        with pytest.raises(Invalid):
            await service.start(services, board, str(call_id), "shout", lead)
        with pytest.raises(Conflict):  # a supervisor without a phone
            await service.start(services, board, str(call_id), "listen", user("s", "supervisor"))
        async with services.sessions() as db:
            rows = (await db.execute(select(AuditEntry))).scalars().all()
        assert [(r.actor, r.action, r.object_id) for r in rows] == [("lars", "refuse", "17000.0")]
    assert client.sent == []


async def test_the_spys_start_and_end_are_on_record_under_whoever_asked(tmp_path: Path) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        async with services.sessions() as db:
            db.add(
                AuditEntry(
                    actor="sofie",
                    action="coach",
                    object_type="coaching",
                    object_id="abc",
                    detail="listen call 17000.0 agent 2001 from phone 2050",
                )
            )
            await db.commit()
        spyer = {"SpyerUniqueid": "coach-abc", "SpyerChannel": "PJSIP/2050-00000009"}
        await service.record_event(
            services, event("ChanSpyStart", SpyeeChannel="PJSIP/2001-00000002", **spyer)
        )
        # The tone's spy and other Originates are not sessions.
        await service.record_event(
            services, event("ChanSpyStart", SpyerUniqueid="1700.5", SpyerChannel="Local/tone")
        )
        await service.record_event(
            services, event("OriginateResponse", ActionID="bereik-cb-4", Response="Failure")
        )
        await service.record_event(services, event("ChanSpyStop", **spyer))
        await service.record_event(
            services,
            event("OriginateResponse", ActionID="bereik-coach-xyz", Response="Failure"),
        )
        async with services.sessions() as db:
            rows = (await db.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars().all()
        assert [(r.actor, r.action, r.object_id) for r in rows] == [
            ("sofie", "coach", "abc"),
            ("sofie", "coach_start", "abc"),
            ("sofie", "coach_end", "abc"),
            ("system", "coach_end", "xyz"),
        ]
        assert rows[1].detail.endswith("on PJSIP/2001-00000002")
        assert rows[3].detail.endswith("the phone was not answered")
