"""Coaching over HTTP: the board's buttons and the API.

POST /api/calls/{id}/coach   {"mode": "listen" | "whisper" | "barge"}: ring the asker's own
                             phone and join it to the agent's leg of the call (by id or
                             uniqueid); a supervisor any agent's call, a team lead their own
                             team's agents' (403 otherwise, on record), 404 an unknown call,
                             409 a call with no agent on it now
GET  /api/coaching           the calls in progress with an agent that the asker may join
                             (the board's coaching table)
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from cti.calls.http import BOARD
from cti.calls.pages import BOARD_PARTS
from cti.coaching import service
from cti.errors import DomainError
from cti.services import Services
from cti.web.auth import current_user, require_role
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error, json_object, refusal
from dialplan.config import KCC_ID


def setup(app: web.Application) -> None:
    app.router.add_post("/api/calls/{id}/coach", coach)
    app.router.add_get("/api/coaching", calls_to_coach)
    # After the board's own setup (cti/calls/pages.py), which makes the parts' table.
    app[BOARD_PARTS]["coaching"] = board_part


async def coach(request: web.Request) -> web.Response:
    user = current_user(request)
    services = request.app[SERVICES]
    if user.role not in ("supervisor", "lead", "admin"):
        # Asking to listen in on a citizen's call without the role is on record too (BIO).
        await service.refuse(services, user, request.match_info["id"][:64], f"role {user.role}")
        raise json_error("alleen een supervisor of teamleider mag meeluisteren", 403)
    body = await json_object(request)
    try:
        session = await service.start(
            services, request.app[BOARD], request.match_info["id"], str(body.get("mode", "")), user
        )
    except DomainError as exc:
        raise refusal(exc) from None
    return web.json_response(service.session_json(session))


async def calls_to_coach(request: web.Request) -> web.Response:
    """Answered calls at an agent's phone the asker may join: agent, team, for how long.
    No caller's number: joining a call needs none, and the board shows none."""
    user = require_role(request, "supervisor", "lead")
    config = request.app[SERVICES].config
    names = {phone.extension: phone.name for phone in config.phones}
    teams = {team.id: team.name for team in config.teams} | {KCC_ID: "KCC"}
    now = time.time()
    calls = []
    for call in sorted(request.app[BOARD].calls.values(), key=lambda c: c.extension):
        team = service.agent_team(config, call.extension)
        if call.state != "answered" or not service.may_coach(user, team):
            continue
        calls.append(
            {
                "call": call.linkedid,
                "agent": call.extension,
                "name": names.get(call.extension, ""),
                "team": team,
                "team_name": teams.get(team, team),
                "seconds": max(0, round(now - call.since)),
            }
        )
    return web.json_response({"calls": calls, "phone": user.extension})


async def board_part(services: Services) -> dict[str, Any]:
    """The board's coaching section (its rows come from /api/coaching, per user)."""
    return {"announce": services.config.coaching.announce}
