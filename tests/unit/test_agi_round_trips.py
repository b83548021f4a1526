"""The AGI commands a handler on the hopper path (14070 → IVR → team → hopper) sends: each
is a round trip both processes pay for, so the variables a handler leaves the dialplan go in
one EXEC MSet with its result."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agi.handlers import team as team_handler
from agi.protocol import Environment
from agi.server import AgiChannel
from cti.presence import set_presence
from cti.services import Services
from dialplan.config import Config
from tests.support.agi_args import asterisk_args
from tests.support.agi_writer import NullWriter
from tests.support.memory_services import TWO_TEAMS, memory_services


@pytest.fixture
async def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Services]:
    monkeypatch.setattr(team_handler, "open_now", lambda config: True)
    async with memory_services(Config.model_validate(TWO_TEAMS), tmp_path / "instance") as made:
        yield made


async def commands(services: Services, answers: list[str], number: str) -> list[list[str]]:
    """The team handler's commands for a call to `number`, Asterisk answering `answers`."""
    reader = asyncio.StreamReader()
    reader.feed_data("".join(f"{answer}\n" for answer in answers).encode())
    reader.feed_eof()
    writer = NullWriter()
    env = Environment({"uniqueid": "1.1", "network_script": f"team?number={number}"})
    channel = AgiChannel(env, reader, writer, command_timeout=1.0)  # type: ignore[arg-type]
    await team_handler.team(channel, services)
    return [asterisk_args(line) for line in writer.written.decode().splitlines()]


async def test_a_team_with_nobody_present_is_told_to_the_dialplan_in_one_command(
    services: Services,
) -> None:
    await set_presence(services, "3001", False, actor="phone:3001")
    sent = await commands(services, ["200 result=0"], "7001")
    assert sent == [
        [
            "EXEC",
            "MSet",
            "BEREIK_TEAM=burgerzaken,BEREIK_RING=20,BEREIK_DIALS=0,BEREIK_DIAL=,"
            "BEREIK_HOPPER_REASON=nobody_present,BEREIK_RESULT=ok",
        ]
    ]


async def test_a_free_member_is_rung_with_the_state_read_and_the_variables_in_one_mset(
    services: Services,
) -> None:
    sent = await commands(services, ["200 result=1 (NOT_INUSE)", "200 result=0"], "7001")
    assert sent == [
        ["GET", "FULL", "VARIABLE", "${DEVICE_STATE(PJSIP/3001)}"],
        [
            "EXEC",
            "MSet",
            "BEREIK_TEAM=burgerzaken,BEREIK_RING=20,BEREIK_DIALS=1,BEREIK_DIAL=PJSIP/3001,"
            "BEREIK_DIAL_1=PJSIP/3001,BEREIK_RESULT=ok",
        ],
    ]
