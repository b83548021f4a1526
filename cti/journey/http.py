"""``GET /api/calls/{id}/journey``: a call's journey as JSON (cti/journey/service.py).

Every look is on record (a caller's number and whereabouts are personal data), and so is
every refusal. The number is masked for roles that do not call citizens back.
"""

from __future__ import annotations

from aiohttp import web

from cti.audit import audit
from cti.journey.service import Journey, find_call, journey_of, may_see
from cti.store.models import User
from cti.web.auth import current_user, forbidden, mask_number
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error


def setup(app: web.Application) -> None:
    app.router.add_get("/api/calls/{id}/journey", journey_json)


async def load(request: web.Request) -> tuple[User, Journey]:
    """The journey the request names, if this user may see it (audited either way)."""
    user = current_user(request)
    services = request.app[SERVICES]
    key = request.match_info["id"]
    async with services.sessions() as session:
        call = await find_call(session, key)
        if call is None:
            raise json_error(f"call {key[:64]} does not exist", 404)
        journey = await journey_of(session, services.config, call)
        allowed = await may_see(session, user, journey)
        audit(
            session,
            user.name,
            "view" if allowed else "refuse",
            "call",
            call.uniqueid,
            "journey" if allowed else "journey: not the user's call or team",
        )
        await session.commit()
    if not allowed:
        raise forbidden("this call did not reach you or your team")
    return user, journey


async def journey_json(request: web.Request) -> web.Response:
    user, journey = await load(request)
    return web.json_response(journey.as_json(mask_number(journey.call.caller, user)))
