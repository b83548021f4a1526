"""What the board's waiting-line part says about each agent, and the place limit's range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cti.queue.http import queue_figures_json
from cti.store.models import AgentState
from dialplan.config import Config
from tests.support.config_files import problem
from tests.support.memory_services import CONFIG, memory_services

QUEUE_CONFIG = Config.model_validate(
    {
        **CONFIG.model_dump(),
        "kcc": {
            "agents": ["2001", "3001"],
            "supervisor_mailbox": "kcc@example.org",
            "mode": "queue",
        },
    }
)


async def test_each_agent_with_the_reason_of_a_pause_and_how_long_it_lasts(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    async with memory_services(QUEUE_CONFIG, tmp_path) as services:
        async with services.sessions() as session, session.begin():
            session.add_all(
                [
                    AgentState(
                        extension="2001",
                        queue="kcc",
                        signed_in=True,
                        paused=True,
                        pause_reason="lunch",
                        changed_at=now - timedelta(seconds=125),
                        changed_by="2001",
                    ),
                    AgentState(
                        extension="3001",
                        queue="kcc",
                        signed_in=False,
                        paused=False,
                        pause_reason="",
                        changed_at=now - timedelta(seconds=7),
                        changed_by="sofie",
                    ),
                ]
            )
        agents = {a["extension"]: a for a in (await queue_figures_json(services))["agents"]}
    anna = agents["2001"]
    assert (anna["name"], anna["state"], anna["reason"], anna["reason_label"]) == (
        "KCC Anna",
        "paused",
        "lunch",
        "Lunch",
    )
    assert 125 <= anna["seconds"] <= 135
    assert (agents["3001"]["state"], agents["3001"]["reason_label"]) == ("signed_out", "")
    assert 7 <= agents["3001"]["seconds"] <= 17


def test_the_place_limit_is_one_to_twenty_the_numbers_bereiks_voice_says(
    tmp_path: Path,
) -> None:
    assert "position_limit" in problem(tmp_path, "[queue]\nposition_limit = 21\n")
    assert "position_limit" in problem(tmp_path, "[queue]\nposition_limit = 0\n")
