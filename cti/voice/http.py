"""Hearing a recorded question: GET /api/recordings/{id}.

Only for those who may see the recording's hopper (the team's own members and lead, and
the all-teams roles; ``require_team_access``, the rule of every hopper view), and every
play is a row in the audit log (BIO). The audio is sent whole, without range requests, so
one play is one request and one audit row; the team inbox and the hopper page load it
only when play is pressed (``preload="none"``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from cti.announcements.pages import SAVINGS
from cti.audit import audit
from cti.voice import savings
from cti.voice.service import recording_with_hopper
from cti.web.auth import require_role, require_team_access
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error

ROLES = ("member", "lead", "supervisor", "agent")


async def get_recording(request: web.Request) -> web.Response:
    user = require_role(request, *ROLES)
    raw_id = request.match_info["id"]
    if not raw_id.isdigit() or len(raw_id) > 12:
        raise json_error("recording id must be a number")
    services = request.app[SERVICES]
    found = await recording_with_hopper(services, int(raw_id))
    if found is None:
        raise json_error(f"recording {raw_id} does not exist", 404)
    recording, hopper = found
    require_team_access(user, hopper.team_id)
    try:
        audio = await asyncio.to_thread(Path(recording.path).read_bytes)
    except FileNotFoundError:
        raise json_error(f"recording {raw_id} is no longer kept", 404) from None
    async with services.sessions() as session:
        audit(session, user.name, "play", "recording", recording.id, f"hopper {hopper.id}")
        await session.commit()
    return web.Response(body=audio, content_type="audio/wav")


def setup(app: web.Application) -> None:
    app.router.add_get("/api/recordings/{id}", get_recording)
    # The operator screen shows what each announcement saved today.
    app[SAVINGS] = savings.today
