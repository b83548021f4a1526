"""The post-call survey's figures where people look: the board, the reports screen and its
CSV, and GET /api/survey, with answers in the database. Per agent only for the agent and
their team lead, and only from ``survey.min_answers_per_agent`` answers on."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bereik.serve import web_app
from cti.calls.live import LiveCalls
from cti.services import Services
from cti.store.models import SurveyAnswer
from cti.users.service import create_user
from dialplan.config import Config
from tests.support.memory_services import TWO_TEAMS, memory_services
from tests.support.web_client import PASSWORD, Client, login_token, post_login

CONFIG = Config.model_validate(
    {
        **TWO_TEAMS,
        "phones": [{"extension": "3001"}, {"extension": "3002"}, {"extension": "3101"}],
        "teams": [
            {**TWO_TEAMS["teams"][0], "members": ["3001", "3002"]},
            TWO_TEAMS["teams"][1],
        ],
        "survey": {"shares": {"kcc": 1.0, "burgerzaken": 1.0}, "min_answers_per_agent": 3},
    }
)
# (team, agent, tevredenheid, beantwoord) per call: 3001 has 3 answers to each question,
# 3002 only 2 (below the minimum), the KCC's 2001 one.
CALLS = [
    ("burgerzaken", "3001", 5, 1),
    ("burgerzaken", "3001", 4, 1),
    ("burgerzaken", "3001", 3, 2),
    ("burgerzaken", "3002", 2, 2),
    ("burgerzaken", "3002", 1, 2),
    ("kcc", "2001", 5, 1),
]
USERS = [
    ("carla", "member", "burgerzaken", "3001"),
    ("bob", "member", "burgerzaken", "3002"),
    ("lea", "lead", "burgerzaken", ""),
    ("bert", "lead", "belastingen", ""),
    ("sam", "supervisor", "", ""),
]


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with memory_services(CONFIG, tmp_path) as services:
        now = datetime.now(UTC) - timedelta(minutes=1)
        async with services.sessions() as db, db.begin():
            for n, (team, agent, score, yes) in enumerate(CALLS):
                for question, value in (("tevredenheid", score), ("beantwoord", yes)):
                    db.add(
                        SurveyAnswer(
                            call_uniqueid=f"call-{n}",
                            team_id=team,
                            agent=agent,
                            question=question,
                            value=value,
                            at=now,
                        )
                    )
            for name, role, team, extension in USERS:
                await create_user(db, name, PASSWORD, role, team_id=team, extension=extension)
        yield services


async def signed_in(services: Services, name: str) -> AsyncIterator[Client]:
    async with TestClient(TestServer(web_app(services, LiveCalls()))) as client:
        done = await post_login(client, await login_token(client), PASSWORD, name)
        assert done.status == 303 and "err=" not in done.headers["Location"]
        yield client


def cells(page: str, table_id: str) -> dict[tuple[str, str], str]:
    """{(row, question): text} of a table whose rows carry data-team or data-employee."""
    table = re.search(rf'id="{table_id}".*?</table>', page, re.S)
    assert table, f"no table {table_id}"
    found = {}
    for row, body in re.findall(r'<tr data-(?:team|employee)="([^"]+)">(.*?)</tr>', table[0], re.S):
        for question, text in re.findall(r'<td data-question="([^"]+)">(.*?)</td>', body, re.S):
            found[(row, question)] = text.strip()
    return found


async def test_the_board_shows_the_survey_per_team_and_the_kcc(services: Services) -> None:
    async for client in signed_in(services, "sam"):
        page = await (await client.get("/board")).text()
        shown = cells(page, "survey-row")
        # Burgerzaken: (5+4+3+2+1)/5 = 3.0, yes 2 of 5 = 40 %; the KCC: 5.0 and 100 %.
        assert shown[("burgerzaken", "tevredenheid")] == "3.0 (5)"
        assert shown[("burgerzaken", "beantwoord")] == "40 % (5)"
        assert shown[("kcc", "tevredenheid")] == "5.0 (1)"
        assert shown[("belastingen", "tevredenheid")] == "–"
        assert "3001" not in page  # no agent on the wall screen


async def test_the_team_lead_sees_per_employee_survey_figures_from_the_minimum_on(
    services: Services,
) -> None:
    async for client in signed_in(services, "lea"):
        page = await (await client.get("/reports?team=burgerzaken")).text()
        shown = cells(page, "survey-figures")
        assert shown[("(team)", "tevredenheid")] == "3.0 gemiddeld (n=5)"
        assert shown[("(team)", "beantwoord")] == "40 % ja (n=5)"
        assert shown[("3001", "tevredenheid")] == "4.0 gemiddeld (n=3)"
        assert shown[("3001", "beantwoord")] == "67 % ja (n=3)"
        assert not any(row == "3002" for row, _ in shown)  # 2 answers: below the minimum
        report = await (await client.get("/reports/report.csv?team=burgerzaken")).text()
        rows = {
            (r["employee"], r["figure"]): r["value"] for r in csv.DictReader(io.StringIO(report))
        }
        assert rows[("3001", "survey:tevredenheid")] == "4.0 gemiddeld (n=3)"
        assert ("3002", "survey:tevredenheid") not in rows


async def test_a_supervisor_sees_the_teams_survey_figures_but_no_employee(
    services: Services,
) -> None:
    async for client in signed_in(services, "sam"):
        for team, score in (("burgerzaken", "3.0 gemiddeld (n=5)"), ("kcc", "5.0 gemiddeld (n=1)")):
            page = await (await client.get(f"/reports?team={team}")).text()
            shown = cells(page, "survey-figures")
            assert shown == {
                ("(team)", "tevredenheid"): score,
                ("(team)", "beantwoord"): score.replace("3.0 gemiddeld", "40 % ja").replace(
                    "5.0 gemiddeld", "100 % ja"
                ),
            }
            report = await (await client.get(f"/reports/report.csv?team={team}")).text()
            rows = csv.DictReader(io.StringIO(report))
            assert {r["employee"] for r in rows if "survey" in r["figure"]} == {"(team)"}


async def test_per_agent_survey_figures_are_for_the_agent_themself_and_their_lead_only(
    services: Services,
) -> None:
    agents = {}
    for name in ("carla", "bob", "lea", "bert", "sam"):
        async for client in signed_in(services, name):
            answer = await (await client.get("/api/survey")).json()
            agents[name] = answer["agents"]
            assert answer["teams"]["burgerzaken"]["tevredenheid"]["answers"] == 5
    assert (
        agents["carla"]
        == agents["lea"]
        == {
            "3001": {
                "beantwoord": {"answers": 3, "average": None, "yes_ratio": 0.667},
                "tevredenheid": {"answers": 3, "average": 4.0, "yes_ratio": None},
            }
        }
    )
    assert agents["bob"] == {}  # his own, but 2 answers are below the minimum
    assert agents["bert"] == agents["sam"] == {}  # another team's lead; the supervisor
