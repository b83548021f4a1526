"""The pure parts of the team and hopper handlers: who rings, how, and why a hopper."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from agi.handlers.hopper import digit_prompts, reason_for
from agi.handlers.team import dial_plan
from cti.ami.channels import extension_of
from cti.presence import present_members, set_presence
from cti.services import build_services
from cti.store.models import Base
from dialplan.config import Team
from tests.support.memory_services import CONFIG


def team(strategy: str) -> Team:
    return Team.model_validate(
        {
            "id": "t",
            "name": "T",
            "number": "7001",
            "members": ["3001", "3002"],
            "strategy": strategy,
            "mailbox": "t@example.org",
        }
    )


def test_ringall_is_one_dial_of_every_present_member() -> None:
    assert dial_plan(team("ringall"), ["3001", "3002"]) == ["PJSIP/3001&PJSIP/3002"]


def test_linear_is_one_dial_per_member_in_order() -> None:
    assert dial_plan(team("linear"), ["3002", "3001"]) == ["PJSIP/3002", "PJSIP/3001"]


def test_nobody_present_means_nothing_to_dial() -> None:
    assert dial_plan(team("ringall"), []) == []


def test_reason_from_the_dialplan_or_the_dial_status() -> None:
    assert reason_for("nobody_present", "") == "nobody_present"
    assert reason_for("", "BUSY") == "busy"
    assert reason_for("", "CONGESTION") == "busy"
    assert reason_for("", "NOANSWER") == "no_answer"
    assert reason_for("", "") == "no_answer"
    assert reason_for("evil", "CHANUNAVAIL") == "no_answer"


def test_extension_from_a_channel_name() -> None:
    assert extension_of("PJSIP/2001-0000000a") == "2001"
    assert extension_of("PJSIP/trunk-00000001") == "trunk"
    assert extension_of("Local/7001@bereik-team-0001;1") == ""
    assert extension_of("") == ""


def test_numbers_are_spoken_digit_by_digit_from_cached_prompts() -> None:
    assert digit_prompts("0612") == ["0", "6", "1", "2"]
    assert digit_prompts("+31 70") == ["plus", "3", "1", "7", "0"]


async def test_absent_members_are_skipped_and_unknown_ones_count_as_present(
    tmp_path: Path,
) -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    services = build_services(
        CONFIG, async_sessionmaker(engine, expire_on_commit=False), home=tmp_path
    )
    try:
        assert await present_members(services, ["3001", "3101"]) == ["3001", "3101"]
        await set_presence(services, "3001", False, actor="phone:3001")
        assert await present_members(services, ["3001", "3101"]) == ["3101"]
        await set_presence(services, "3001", True, actor="phone:3001")
        assert await present_members(services, ["3001", "3101"]) == ["3001", "3101"]
    finally:
        await engine.dispose()
