"""Every status the API refuses with: the right HTTP status and an ``{"error": ...}`` body.

Domain failures carry their status (cti/errors.py); the handlers answer it as it is
(cti/web/jsonapi.py `refusal`), never by reading the message's words.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient, TestServer

from cti import errors
from cti.announcements import http as announcements_http
from cti.announcements.service import AnnouncementError, SpeechFailed
from cti.callbacks.service import CallbackError
from cti.calls.transfer import TransferError
from cti.hoppers.service import HopperError, HopperNotFound, HopperNotOpen
from cti.services import Services, build_services
from cti.store.db import create_engine, migrate_async, sessions
from cti.users.service import create_user, issue_token
from cti.web.app import create_app
from cti.web.jsonapi import json_error, refusal
from dialplan.config import load

# Every refusal status the API's handlers use (400 bad input, 401 not signed in, 403 not
# allowed, 404 no such thing, 405 wrong method, 409 not in a state for it, 413 too large,
# 422 valid but not makeable, 429 too many sign-ins, 502 Kamailio answered wrongly, 503
# AMI down).
STATUSES = (400, 401, 403, 404, 405, 409, 413, 422, 429, 502, 503)


@pytest.mark.parametrize("status", STATUSES)
def test_json_error_answers_each_status_with_the_message_as_json(status: int) -> None:
    error = json_error("geen toegang tot dit team", status)
    assert isinstance(error, web.HTTPException)
    assert error.status == status
    assert error.content_type == "application/json"
    assert json.loads(error.text or "") == {"error": "geen toegang tot dit team"}


def test_a_status_aiohttp_has_no_class_for_is_a_400() -> None:
    assert json_error("odd", 499).status == 400


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (errors.Invalid("x"), 400),
        (errors.Forbidden("x"), 403),
        (errors.NotFound("x"), 404),
        (errors.Conflict("x"), 409),
        (errors.TooLarge("x"), 413),
        (errors.Unprocessable("x"), 422),
        (errors.UpstreamFailed("x"), 502),
        (errors.Unavailable("x"), 503),
        (HopperError("onbekend team: 'x'"), 400),
        (HopperNotFound("terugbelverzoek 9 bestaat niet"), 404),
        (HopperNotOpen("terugbelverzoek 9 is al gesloten"), 409),
        (AnnouncementError("the text is empty"), 400),
        (SpeechFailed("speech synthesis failed: espeak-ng missing"), 422),
        (CallbackError("al teruggebeld", 409), 409),
        (CallbackError("geen nummer"), 400),
        (TransferError("the exchange is not reachable (AMI down)", 503), 503),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_each_domain_failure_is_answered_with_its_own_status(
    failure: errors.DomainError, status: int
) -> None:
    answer = refusal(failure)
    assert answer.status == status
    assert json.loads(answer.text or "") == {"error": str(failure)}


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    path = tmp_path / "bereik.toml"
    url = f"sqlite:///{tmp_path / 'bereik.db'}"
    path.write_text(f'[database]\nurl = "{url}"\n')
    await migrate_async(url)
    engine = create_engine(url)
    yield build_services(load(path), sessions(engine), home=tmp_path / "instance")
    await engine.dispose()


async def test_an_upload_over_20_mb_is_a_413_with_the_reason_not_a_500(
    services: Services,
) -> None:
    async with services.sessions() as session:
        user = await create_user(session, "olga", "een-lang-wachtwoord", "operator")
        token = await issue_token(session, user)
        await session.commit()
    app = create_app(services, [announcements_http.setup])
    async with TestClient(TestServer(app)) as client:
        form = FormData()
        form.add_field("kind", "news")
        form.add_field("file", b"\0" * (announcements_http.MAX_UPLOAD + 1), filename="lang.wav")
        response = await client.post(
            "/api/announcements/upload",
            data=form,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status == 413
        assert await response.json() == {"error": "the file is larger than 20 MB"}
