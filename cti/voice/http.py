"""Hearing a recorded question: GET /api/recordings/{id}.

Only for those who may see the recording's hopper (the team's own members and lead, and
the all-teams roles; ``require_team_access``, the rule of every hopper view), and every
play is a row in the audit log (BIO). The audio is sent whole, without range requests, so
one play is one request and one audit row; the team inbox and the hopper page load it
only when play is pressed (``preload="none"``).

A virtual hold's question whose callback reached the citizen has no hopper: it is heard
in the KCC popup while the callback is at the agent's phone (``require_callback_access``),
through the same route; ``GET /api/virtual-holds/{id}/recordings`` gives the popup its ids.

A quality recording (cti/voice/quality.py) is heard through the same route too, by its
team's lead and the supervisors only (``require_quality_access``); everyone else gets 403,
which is audited as a refusal. ``GET /api/quality-recordings`` lists what they may hear;
``POST /api/agent/recording/stop`` is the agent's button that stops the recording of the
call at their phone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from cti.announcements.pages import SAVINGS
from cti.audit import audit
from cti.calls.http import BOARD
from cti.store.models import QuestionRecording, User
from cti.voice import quality, savings
from cti.voice.service import callback_questions, recording_and_owner
from cti.web.auth import (
    forbidden,
    mask_number,
    require_callback_access,
    require_role,
    require_team_access,
)
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error, refusal

ROLES = ("member", "lead", "supervisor", "agent")


async def get_recording(request: web.Request) -> web.Response:
    user = require_role(request, *ROLES)
    raw_id = _number(request, "recording")
    services = request.app[SERVICES]
    async with services.sessions() as session:
        row = await session.get(QuestionRecording, int(raw_id))
    if row is not None and row.kind == quality.KIND:
        await _require_quality_access(request, user, row)
        return await _play(request, user, row, f"quality team {row.team_id}")
    found = await recording_and_owner(services, int(raw_id))
    if found is None:
        raise json_error(f"recording {raw_id} does not exist", 404)
    recording, hopper, hold = found
    if hopper is not None:
        require_team_access(user, hopper.team_id)
        owner = f"hopper {hopper.id}"
    else:
        assert hold is not None
        _require_callback_access(request, user, hold.id)
        owner = f"virtual hold {hold.id}"
    return await _play(request, user, recording, owner)


async def _play(
    request: web.Request, user: User, recording: QuestionRecording, owner: str
) -> web.Response:
    try:
        audio = await asyncio.to_thread(Path(recording.path).read_bytes)
    except FileNotFoundError:
        raise json_error(f"recording {recording.id} is no longer kept", 404) from None
    async with request.app[SERVICES].sessions() as session:
        audit(session, user.name, "play", "recording", recording.id, owner)
        await session.commit()
    return web.Response(body=audio, content_type="audio/wav")


def may_hear_quality(user: User, team_id: str) -> bool:
    """A quality recording is heard by its team's lead and the supervisors (and admin):
    those who coach on it. Not the agent recorded, not their colleagues."""
    if user.role in quality.LISTENERS:
        return True
    return user.role == "lead" and bool(user.team_id) and user.team_id == team_id


async def _require_quality_access(
    request: web.Request, user: User, recording: QuestionRecording
) -> None:
    if may_hear_quality(user, recording.team_id):
        return
    async with request.app[SERVICES].sessions() as session:
        audit(
            session,
            user.name,
            "refuse",
            "recording",
            recording.id,
            f"quality team {recording.team_id}: not its lead or a supervisor",
        )
        await session.commit()
    raise forbidden("only the team's lead and the supervisors hear a quality recording")


async def get_quality_recordings(request: web.Request) -> web.Response:
    """The quality recordings the user may hear (their team's as lead; all as supervisor),
    newest first: ids, team, when, length, the caller masked. Listing is audited."""
    user = require_role(request, "lead", "supervisor")
    services = request.app[SERVICES]
    found = await quality.listed(services, user)
    return web.json_response(
        {
            "recordings": [
                {
                    "id": item.id,
                    "team": item.team,
                    "call": item.call_uniqueid,
                    "caller": mask_number(item.caller),
                    "started_at": item.started_at.isoformat() if item.started_at else None,
                    "seconds": item.seconds,
                    "url": f"/api/recordings/{item.id}",
                }
                for item in found
            ]
        }
    )


async def stop_recording(request: web.Request) -> web.Response:
    """The agent stops the quality recording of the call at their phone (answered there)."""
    user = require_role(request, "agent", "member", "lead")
    board = request.app.get(BOARD)
    call = board.calls.get(user.extension) if board is not None and user.extension else None
    if call is None or call.state != "answered":
        raise json_error("er is geen gesprek aan uw toestel", 409)
    services = request.app[SERVICES]
    try:
        stopped = await quality.stop(services, call.linkedid)
    except quality.StopError as exc:
        raise refusal(exc) from None
    if stopped:
        async with services.sessions() as session:
            audit(session, user.name, "stop", "quality recording", call.linkedid)
            await session.commit()
    return web.json_response({"call": call.linkedid, "stopped": stopped})


async def get_callback_recordings(request: web.Request) -> web.Response:
    """The questions a virtual hold's caller spoke, for the KCC popup as its callback rings:
    ids and lengths only (the audio is played through /api/recordings/{id}, audited there)."""
    user = require_role(request, *ROLES)
    raw_id = _number(request, "virtual hold")
    found = await callback_questions(request.app[SERVICES], int(raw_id))
    if found is None:
        raise json_error(f"virtual hold {raw_id} does not exist", 404)
    hold, recordings = found
    _require_callback_access(request, user, hold.id)
    return web.json_response(
        {
            "id": hold.id,
            "recordings": [
                {"id": r.id, "url": f"/api/recordings/{r.id}", "seconds": r.seconds}
                for r in recordings
            ],
        }
    )


def _number(request: web.Request, what: str) -> str:
    raw_id = request.match_info["id"]
    if not raw_id.isdigit() or len(raw_id) > 12:
        raise json_error(f"{what} id must be a number")
    return raw_id


def _require_callback_access(request: web.Request, user: User, hold_id: int) -> None:
    board = request.app.get(BOARD)
    at_phone = board.callback_at(user.extension) if board is not None else None
    require_callback_access(user, hold_id, at_phone)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/recordings/{id}", get_recording)
    app.router.add_get("/api/virtual-holds/{id}/recordings", get_callback_recordings)
    app.router.add_get("/api/quality-recordings", get_quality_recordings)
    app.router.add_post("/api/agent/recording/stop", stop_recording)
    # The operator screen shows what each announcement saved today.
    app[SAVINGS] = savings.today
