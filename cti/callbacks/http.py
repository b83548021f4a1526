"""The callback API: one hopper with its attempts, claim, call back, close.

    GET  /api/hoppers/{id}            the hopper, its history and callback attempts
    POST /api/hoppers/{id}/claim      take it on (claimed_by = you)
    POST /api/hoppers/{id}/callback   ring your phone, then the citizen (202 + attempt)
    POST /api/hoppers/{id}/close      {"reason": "...", "note": "..."}; reason required

Every view and change writes an audit row in the same transaction as the change.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.orm import selectinload

from cti.audit import audit
from cti.callbacks.clicktocall import attempt_json, start_callback
from cti.callbacks.service import (
    CLOSING_REASONS,
    CallbackError,
    claim_hopper,
    close_hopper,
    load_attempts,
    record_closed,
    unreachability,
)
from cti.hoppers.service import hopper_json, opening_hours
from cti.store.models import Hopper, User
from cti.voice.service import recordings_of
from cti.web.auth import mask_number, require_own_team, require_role, require_team_access
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error, json_object, refusal

CALLING_ROLES = ("member", "lead", "agent")
# Claim and close: further narrowed to the hopper's own team by require_own_team.
HANDLING_ROLES = ("member", "lead", "agent")
VIEW_ROLES = ("member", "lead", "agent", "supervisor", "operator")


def setup(app: web.Application) -> None:
    app.router.add_get(r"/api/hoppers/{id:\d+}", get_hopper)
    app.router.add_post(r"/api/hoppers/{id:\d+}/claim", post_claim)
    app.router.add_post(r"/api/hoppers/{id:\d+}/callback", post_callback)
    app.router.add_post(r"/api/hoppers/{id:\d+}/close", post_close)


def _hopper_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    # The route only takes digits; more than 12 is no hopper of ours, and would overflow
    # the database's integer (a 500) instead of being a plain 404.
    if len(raw) > 12:
        raise json_error(f"hopper {raw[:20]}... does not exist", 404)
    return int(raw)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    return await json_object(
        request, not_json="de body is geen geldige JSON", not_object="verwacht een JSON-object"
    )


def _full_json(
    hopper: Hopper, attempts: list[Any], user: User, request: web.Request
) -> dict[str, Any]:
    config = request.app[SERVICES].config
    data = hopper_json(hopper)
    data["caller"] = mask_number(hopper.caller, user)
    data["attempts"] = [attempt_json(a) for a in attempts]
    status = unreachability(
        attempts, hopper.deadline, config.callbacks.max_attempts, opening_hours(config)
    )
    data["unreachable"] = {
        "allowed": status.allowed,
        "tried": status.tried,
        "dayparts": sorted(status.dayparts),
        "needed": config.callbacks.max_attempts,
    }
    language = user.language if user.language in ("nl", "en") else "nl"
    data["closing_reasons"] = {key: text[language] for key, text in CLOSING_REASONS.items()}
    return data


async def get_hopper(request: web.Request) -> web.Response:
    user = require_role(request, *VIEW_ROLES)
    services = request.app[SERVICES]
    hopper_id = _hopper_id(request)
    async with services.sessions() as session, session.begin():
        hopper = await session.get(Hopper, hopper_id, options=[selectinload(Hopper.events)])
        if hopper is None:
            raise json_error(f"terugbelverzoek {hopper_id} bestaat niet", 404)
        require_team_access(user, hopper.team_id)
        attempts = list(await load_attempts(session, hopper_id))
        audit(session, actor=user.name, action="view", object_type="hopper", object_id=hopper_id)
        data = _full_json(hopper, attempts, user, request)
    # The question in the caller's words: where to hear it (GET /api/recordings/{id}).
    data["recordings"] = [
        {"id": rid, "url": f"/api/recordings/{rid}"}
        for rid in (await recordings_of(services, [hopper_id])).get(hopper_id, [])
    ]
    return web.json_response(data)


async def post_claim(request: web.Request) -> web.Response:
    user = require_role(request, *HANDLING_ROLES)
    services = request.app[SERVICES]
    hopper_id = _hopper_id(request)
    try:
        async with services.sessions() as session, session.begin():
            hopper = await session.get(Hopper, hopper_id, options=[selectinload(Hopper.events)])
            if hopper is None:
                raise json_error(f"terugbelverzoek {hopper_id} bestaat niet", 404)
            require_own_team(user, hopper.team_id)
            claim_hopper(session, hopper, user.name)
    except CallbackError as exc:
        raise refusal(exc) from None
    return web.json_response({"id": hopper_id, "claimed_by": user.name})


async def post_callback(request: web.Request) -> web.Response:
    user = require_role(request, *CALLING_ROLES)
    services = request.app[SERVICES]
    hopper_id = _hopper_id(request)
    async with services.sessions() as session:
        hopper = await session.get(Hopper, hopper_id)
    if hopper is None:
        raise json_error(f"terugbelverzoek {hopper_id} bestaat niet", 404)
    require_team_access(user, hopper.team_id)
    try:
        attempt = await start_callback(services, hopper_id, user)
    except CallbackError as exc:
        raise refusal(exc) from None
    return web.json_response(attempt_json(attempt), status=202)


async def post_close(request: web.Request) -> web.Response:
    user = require_role(request, *HANDLING_ROLES)
    services = request.app[SERVICES]
    hopper_id = _hopper_id(request)
    body = await _body(request)
    reason, note = body.get("reason", ""), body.get("note", "")
    if not isinstance(reason, str) or not isinstance(note, str):
        raise json_error("reason en note moeten tekst zijn", 400)
    try:
        async with services.sessions() as session, session.begin():
            hopper = await session.get(Hopper, hopper_id, options=[selectinload(Hopper.events)])
            if hopper is None:
                raise json_error(f"terugbelverzoek {hopper_id} bestaat niet", 404)
            require_own_team(user, hopper.team_id)
            await close_hopper(
                session, hopper, reason, user.name, config=services.config, note=note
            )
    except CallbackError as exc:
        raise refusal(exc) from None
    record_closed(services, hopper)
    return web.json_response(
        {
            "id": hopper.id,
            "status": hopper.status,
            "closing_reason": hopper.closing_reason,
            "within_norm": hopper.within_norm,
            "counts_for_norm": hopper.counts_for_norm,
        }
    )
