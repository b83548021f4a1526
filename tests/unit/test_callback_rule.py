"""One callback-number rule on every path that dials a citizen (cti.hoppers.service.
callback_number): the in-call offer's caller ID, the virtual hold's row and its Originate.
The rule itself is tested in test_hoppers_service.py (create_hopper: the IVR, the API and
the KCC screen make hoppers through it); the virtual hold with a real caller in
tests/e2e/test_premium_callback.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from agi.handlers.hopper import own_number
from bereik.serve import web_app
from cti.calls.live import LiveCalls
from cti.hoppers.service import HopperError
from cti.queue import vhold
from cti.services import Services
from cti.store.models import Hopper, User, VirtualHold
from cti.users.service import create_user, issue_token
from dialplan.config import Config
from tests.support.memory_services import TWO_TEAMS, memory_services

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
REFUSED = ["09001234567", "0906-1234567", "0909 1234567", "0841234567", "+442079460958", "112"]


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with memory_services(Config.model_validate({}), tmp_path) as services:
        yield services


@pytest.mark.parametrize("callerid", REFUSED)
def test_a_paid_or_foreign_caller_id_is_refused_and_the_caller_told(
    services: Services, callerid: str
) -> None:
    assert own_number(callerid, services) == ("", True)


def test_a_dutch_caller_id_is_offered_in_national_form(services: Services) -> None:
    assert own_number("+31612345678", services) == ("0612345678", False)
    assert own_number('"Jan" <0701234567>', services) == ("0701234567", False)


@pytest.mark.parametrize("callerid", ["", "0", "anonymous", "Unknown"])
def test_an_anonymous_caller_is_asked_for_a_number_without_a_refusal(
    services: Services, callerid: str
) -> None:
    assert own_number(callerid, services) == ("", False)


@pytest.mark.parametrize("number", REFUSED)
async def test_a_virtual_hold_on_a_paid_or_foreign_number_is_never_recorded(
    services: Services, number: str
) -> None:
    with pytest.raises(HopperError, match="bellen wij niet terug"):
        await vhold.request(services, "1700000000.1", number, 10, NOW)
    async with services.sessions() as session:
        assert list((await session.execute(select(VirtualHold))).scalars()) == []


class RecordingAmi:
    """Stands in for the AMI client in this unit test: keeps the actions it is given."""

    connected = True

    def __init__(self) -> None:
        self.actions: list[dict[str, Any]] = []

    async def action(self, action: dict[str, Any], timeout: float = 5.0) -> dict[str, str]:
        self.actions.append(action)
        return {"Response": "Success"}


async def test_a_stored_virtual_hold_on_a_paid_number_is_never_originated(
    services: Services,
) -> None:
    """A row from before the rule held at the request: the worker refuses to dial it and
    still places the Dutch one beside it."""
    async with services.sessions() as session, session.begin():
        for uniqueid, number in (("1.1", "09001234567"), ("1.2", "0612345678")):
            session.add(
                VirtualHold(
                    queue="kcc",
                    call_uniqueid=uniqueid,
                    number=number,
                    priority=10,
                    arrived_at=NOW,
                    requested_at=NOW,
                    status="pending",
                    attempts=0,
                    next_at=NOW,
                    agent="",
                )
            )
    ami = RecordingAmi()
    with_ami = dataclasses.replace(services, ami=ami)  # type: ignore[arg-type]
    assert await vhold.place_due(with_ami, NOW) == 1
    assert [a["Exten"] for a in ami.actions] == ["0612345678"]
    assert not any("0900" in str(value) for a in ami.actions for value in a.values())
    async with services.sessions() as session:
        rows = (await session.execute(select(VirtualHold.number, VirtualHold.status))).all()
    assert sorted(tuple(r) for r in rows) == [("0612345678", "queued"), ("09001234567", "failed")]


@pytest.fixture
async def served(
    tmp_path: Path,
) -> AsyncIterator[tuple[Services, RecordingAmi, Any, dict[str, str]]]:
    """bereik serve's web app with a KCC agent and a member of Burgerzaken (ext 3001), an
    outgoing trunk and a connected AMI that records what it is asked."""
    config = Config.model_validate(
        {**TWO_TEAMS, "asterisk": {"trunk_contact": "sip:provider.example"}}
    )
    async with memory_services(config, tmp_path) as services:
        tokens = {}
        async with services.sessions() as db:
            await create_user(db, "anna", "geheim-wachtwoord", "agent", "", "2001")
            await create_user(db, "marieke", "geheim-wachtwoord", "member", "burgerzaken", "3001")
            await db.commit()
            for user in (await db.execute(select(User))).scalars():
                tokens[user.name] = f"Bearer {await issue_token(db, user)}"
            await db.commit()
        ami = RecordingAmi()
        with_ami = dataclasses.replace(services, ami=ami)  # type: ignore[arg-type]
        async with TestClient(TestServer(web_app(with_ami, LiveCalls()))) as client:
            yield with_ami, ami, client, tokens


async def test_the_api_refuses_a_hopper_on_a_paid_number_and_says_why(
    served: tuple[Services, RecordingAmi, Any, dict[str, str]],
) -> None:
    _, _, client, tokens = served
    response = await client.post(
        "/api/hoppers",
        headers={"Authorization": tokens["anna"]},
        json={"caller": "0900 1234567", "team": "burgerzaken"},
    )
    assert response.status == 400
    assert "bellen wij niet terug" in (await response.json())["error"]


async def test_click_to_call_never_dials_a_stored_paid_number(
    served: tuple[Services, RecordingAmi, Any, dict[str, str]],
) -> None:
    """A hopper written before the rule held: the member is told why; nothing originated."""
    services, ami, client, tokens = served
    async with services.sessions() as db, db.begin():
        hopper = Hopper(
            team_id="burgerzaken",
            caller="09061234567",
            reason="no_answer",
            created_at=NOW,
            deadline=NOW,
            status="open",
        )
        db.add(hopper)
    response = await client.post(
        f"/api/hoppers/{hopper.id}/callback", headers={"Authorization": tokens["marieke"]}
    )
    assert response.status == 409
    assert "bellen wij niet terug" in (await response.json())["error"]
    assert ami.actions == []
