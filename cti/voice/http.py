"""Hearing a recorded question: GET /api/recordings/{id}.

Only for those who may see the recording's hopper (the team's own members and lead, and
the all-teams roles; ``require_team_access``, the rule of every hopper view), and every
play is a row in the audit log (BIO). The audio is sent whole, without range requests, so
one play is one request and one audit row; the team inbox and the hopper page load it
only when play is pressed (``preload="none"``).

A virtual hold's question whose callback reached the citizen has no hopper: it is heard
in the KCC popup while the callback is at the agent's phone (``require_callback_access``),
through the same route; ``GET /api/virtual-holds/{id}/recordings`` gives the popup its ids.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from cti.announcements.pages import SAVINGS
from cti.audit import audit
from cti.calls.http import BOARD
from cti.store.models import User
from cti.voice import savings
from cti.voice.service import callback_questions, recording_and_owner
from cti.web.auth import require_callback_access, require_role, require_team_access
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error

ROLES = ("member", "lead", "supervisor", "agent")


async def get_recording(request: web.Request) -> web.Response:
    user = require_role(request, *ROLES)
    raw_id = _number(request, "recording")
    services = request.app[SERVICES]
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
    try:
        audio = await asyncio.to_thread(Path(recording.path).read_bytes)
    except FileNotFoundError:
        raise json_error(f"recording {raw_id} is no longer kept", 404) from None
    async with services.sessions() as session:
        audit(session, user.name, "play", "recording", recording.id, owner)
        await session.commit()
    return web.Response(body=audio, content_type="audio/wav")


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
    # The operator screen shows what each announcement saved today.
    app[SAVINGS] = savings.today
